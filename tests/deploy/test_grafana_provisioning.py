"""observability/grafana/provisioning: the datasources and the dashboard provider Grafana is
started with in compose, and the links between traces and logs."""

from __future__ import annotations

import re
from typing import Any

from tests.deploy import files, log_lines


def datasources() -> dict[str, dict[str, Any]]:
    loaded = files.read_yaml(files.DATASOURCES)
    assert loaded["apiVersion"] == 1
    return {source["uid"]: source for source in loaded["datasources"]}


def grafana_expanded(value: str) -> str:
    """A provisioning value as Grafana reads it: $$ is a literal $ (and $NAME would be an
    environment variable, which must not happen by accident)."""
    assert not re.search(r"(?<!\$)\$(?!\$)", value.replace("$$", "")), value
    return value.replace("$$", "$")


def test_prometheus_loki_and_jaeger_point_at_their_compose_services() -> None:
    sources = datasources()
    assert {uid: source["type"] for uid, source in sources.items()} == {
        "prometheus": "prometheus",
        "loki": "loki",
        "jaeger": "jaeger",
    }
    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    assert sources["loki"]["url"] == "http://loki:3100"
    assert sources["jaeger"]["url"] == "http://jaeger:16686"
    assert [s["uid"] for s in sources.values() if s.get("isDefault")] == ["prometheus"]
    for source in sources.values():
        assert source["url"].split("//")[1].split(":")[0] in files.services()


def test_a_log_line_links_to_its_trace_in_jaeger() -> None:
    (derived,) = datasources()["loki"]["jsonData"]["derivedFields"]
    assert derived["datasourceUid"] == "jaeger"
    assert grafana_expanded(derived["url"]) == "${__value.raw}"
    pattern = re.compile(derived["matcherRegex"])
    line = log_lines.a_line()
    found = pattern.search(line.text)
    assert found is not None and found.group(1) == line.trace_id
    # A line logged outside any span has no trace to link to.
    assert pattern.search(log_lines.a_line(in_span=False).text) is None


def test_a_span_links_to_the_logs_of_its_trace() -> None:
    links = datasources()["jaeger"]["jsonData"]["tracesToLogsV2"]
    assert links["datasourceUid"] == "loki"
    assert links["customQuery"] is True
    query = grafana_expanded(links["query"])
    assert query == '{service=~".+"} |= "${__trace.traceId}"'
    line = log_lines.a_line()
    assert line.trace_id in line.text
    # Jaeger may show a trace id without its leading zeros; the line filter still matches.
    assert line.trace_id.lstrip("0") in line.text


def test_dashboards_are_provisioned_from_the_mounted_dashboards_directory() -> None:
    loaded = files.read_yaml(files.DASHBOARD_PROVIDERS)
    assert loaded["apiVersion"] == 1
    (provider,) = loaded["providers"]
    assert provider["type"] == "file"
    directory = files.host_path("grafana", provider["options"]["path"])
    assert directory == files.GRAFANA / "dashboards"
    assert sorted(directory.glob("*.json")) == files.DASHBOARDS


def test_grafana_reads_the_provisioning_directory_and_a_home_dashboard_that_exist() -> None:
    assert files.host_path("grafana", "/etc/grafana/provisioning/datasources/datasources.yml") == (
        files.DATASOURCES
    )
    assert files.host_path("grafana", "/etc/grafana/provisioning/dashboards/dashboards.yml") == (
        files.DASHBOARD_PROVIDERS
    )
    environment = files.environment("grafana")
    home = files.host_path("grafana", environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home.is_file()
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
