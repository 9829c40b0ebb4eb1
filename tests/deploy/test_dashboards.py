"""observability/grafana/dashboards: valid dashboards whose queries name only what we export,
in PromQL that Prometheus itself accepts, against the datasources Grafana is given."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import files, promql

# Grafana 10/11 dashboards; older or newer ones are migrated on load, silently.
SCHEMA_VERSIONS = range(36, 42)
# The Loki stream labels Promtail sets (observability/promtail/promtail.yml).
LOKI_LABELS = {"service", "level", "container"}

dashboard_files = pytest.mark.parametrize("path", files.DASHBOARDS, ids=lambda path: path.stem)


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, the ones inside collapsed rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any], datasource_type: str) -> Iterator[tuple[str, str]]:
    """(where, expr) of each query of panels on a datasource of this type."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            source = target.get("datasource") or panel.get("datasource") or {}
            if source.get("type") == datasource_type:
                yield f"panel {panel['id']} ({panel['title']}) {target['refId']}", target["expr"]


def provisioned_datasources() -> dict[str, str]:
    """uid -> type of the datasources Grafana is provisioned with."""
    sources = files.read_yaml(files.DATASOURCES)["datasources"]
    return {source["uid"]: source["type"] for source in sources}


def test_the_three_dashboards_exist() -> None:
    assert [path.name for path in files.DASHBOARDS] == [
        "conversions-emails.json",
        "jobs.json",
        "overview.json",
    ]


@dashboard_files
def test_dashboard_is_valid_with_unique_panel_ids(path: Path) -> None:
    dashboard = files.read_json(path)
    assert dashboard["schemaVersion"] in SCHEMA_VERSIONS
    assert dashboard["uid"] and dashboard["title"]
    assert isinstance(dashboard["panels"], list) and dashboard["panels"]
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    for panel in panels(dashboard):
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), f"panel {panel['id']}: duplicate refIds"
        if panel["type"] != "row":
            assert panel.get("targets"), f"panel {panel['id']} ({panel['title']}) has no query"


def test_dashboard_uids_are_unique() -> None:
    uids = [files.read_json(path)["uid"] for path in files.DASHBOARDS]
    assert len(uids) == len(set(uids))


@dashboard_files
def test_panels_fit_the_grid_without_overlapping(path: Path) -> None:
    placed: list[tuple[int, int, int, int, int]] = []
    for panel in files.read_json(path)["panels"]:
        grid = panel["gridPos"]
        x, y, w, h = grid["x"], grid["y"], grid["w"], grid["h"]
        assert x >= 0 and w > 0 and x + w <= 24 and h > 0, f"panel {panel['id']}: {grid}"
        for other_id, ox, oy, ow, oh in placed:
            overlap = x < ox + ow and ox < x + w and y < oy + oh and oy < y + h
            assert not overlap, f"panels {other_id} and {panel['id']} overlap"
        placed.append((panel["id"], x, y, w, h))


@dashboard_files
def test_every_datasource_is_a_provisioned_one(path: Path) -> None:
    provisioned = provisioned_datasources()
    dashboard = files.read_json(path)
    for panel in panels(dashboard):
        targets = panel.get("targets", [])
        for source in [panel.get("datasource"), *(t.get("datasource") for t in targets)]:
            if source is None or source.get("type") == "grafana":
                continue
            where = f"panel {panel['id']}: {source}"
            assert provisioned.get(source["uid"]) == source["type"], where
    for variable in dashboard["templating"]["list"]:
        source = variable["datasource"]
        assert provisioned.get(source["uid"]) == source["type"], variable["name"]


@dashboard_files
def test_prometheus_queries_name_only_metrics_we_export(path: Path) -> None:
    dashboard = files.read_json(path)
    checked = 0
    for where, expr in queries(dashboard, "prometheus"):
        assert promql.problems(promql.without_grafana_variables(expr)) == [], f"{where}: {expr}"
        checked += 1
    assert checked >= 10
    for variable in dashboard["templating"]["list"]:
        # The query as a plain string: Grafana turns that into its query editor's form.
        assert variable["query"] == variable["definition"], variable["name"]
        assert promql.variable_problems(variable["definition"]) == [], variable["name"]


def test_prometheus_accepts_every_dashboard_query(tmp_path: Path) -> None:
    """promtool parses each query (Grafana variables substituted) as a recording rule."""
    exprs = [
        (f"{path.name} {where}", promql.without_grafana_variables(expr))
        for path in files.DASHBOARDS
        for where, expr in queries(files.read_json(path), "prometheus")
    ]
    rules = [
        {"record": f"dashboard:query_{number}", "expr": expr, "labels": {"where": where}}
        for number, (where, expr) in enumerate(exprs)
    ]
    rule_file = tmp_path / "dashboard_queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    checked = subprocess.run(
        [files.promtool(), "check", "rules", str(rule_file)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


_STREAM_SELECTOR = re.compile(r"^\{(?P<matchers>[^}]*)\}")
_MATCHER = re.compile(r'\s*(?P<label>\w+)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*,?')


@dashboard_files
def test_log_queries_select_only_labels_promtail_sets(path: Path) -> None:
    for where, expr in queries(files.read_json(path), "loki"):
        selector = _STREAM_SELECTOR.match(expr)
        assert selector is not None, f"{where}: {expr} does not start with a stream selector"
        labels = [m["label"] for m in _MATCHER.finditer(selector["matchers"])]
        assert labels and set(labels) <= LOKI_LABELS, f"{where}: {expr}"


def test_the_overview_covers_rate_errors_latency_and_in_flight() -> None:
    overview = files.read_json(files.GRAFANA / "dashboards" / "overview.json")
    exprs = " ".join(expr for _, expr in queries(overview, "prometheus"))
    for needed in (
        "rate(mcsv_rpc_server_requests_total",
        'code!="ok"',
        "histogram_quantile(0.5,",
        "histogram_quantile(0.95,",
        "histogram_quantile(0.99,",
        "mcsv_rpc_server_in_flight",
    ):
        assert needed in exprs


def test_the_jobs_and_conversions_dashboards_cover_their_metrics() -> None:
    def named(name: str) -> set[str]:
        dashboard = files.read_json(files.GRAFANA / "dashboards" / name)
        found: set[str] = set()
        for _, expr in queries(dashboard, "prometheus"):
            found.update(re.findall(r"\b(?:mcsv|up|process)_?\w*", expr))
        return found

    for event in ("enqueued", "started", "succeeded", "failed", "retried", "discarded"):
        assert f"mcsv_jobs_{event}_total" in named("jobs.json")
    assert {"mcsv_job_duration_seconds_bucket", "mcsv_queue_jobs"} <= named("jobs.json")
    assert {
        "mcsv_conversions_total",
        "mcsv_conversion_duration_seconds_bucket",
        "mcsv_conversion_bytes_in_total",
        "mcsv_conversion_bytes_out_total",
        "mcsv_emails_total",
        "mcsv_email_delivery_duration_seconds_bucket",
    } <= named("conversions-emails.json")
