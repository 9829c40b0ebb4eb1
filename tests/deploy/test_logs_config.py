"""observability/loki and observability/promtail: our JSON lines parsed with few, bounded
labels, and kept for a bounded time. (No Loki or Promtail binary is packaged for this machine,
so these check the configuration's content; compose runs the real ones.)"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.deploy import files, log_lines

# The parts of Go time layouts (what Promtail's timestamp stage takes) we use, as strptime's.
GO_LAYOUT = {
    "2006": "%Y", "01": "%m", "02": "%d", "15": "%H", "04": "%M", ".000": ".%f", "05": "%S",
    "-0700": "%z",
}  # fmt: skip


def promtail_job() -> dict[str, Any]:
    (job,) = files.read_yaml(files.PROMTAIL_CONFIG)["scrape_configs"]
    assert isinstance(job, dict)
    return job


def stage(name: str) -> dict[str, Any]:
    stages = [s[name] for s in promtail_job()["pipeline_stages"] if name in s]
    assert len(stages) == 1, f"expected one {name} stage"
    found = stages[0]
    assert isinstance(found, dict)
    return found


def test_promtail_reads_only_our_containers_through_the_docker_api() -> None:
    (discovery,) = promtail_job()["docker_sd_configs"]
    assert discovery["host"] == "unix:///var/run/docker.sock"
    assert discovery["filters"] == [{"name": "label", "values": ["mcsv.logs=json"]}]
    for service in files.APP_SERVICES:
        assert files.services()[service]["labels"]["mcsv.logs"] == "json", service
    mounts = {host.as_posix(): inside.as_posix() for host, inside in files.bind_mounts("promtail")}
    assert mounts["/var/run/docker.sock"] == "/var/run/docker.sock"


def test_promtail_parses_our_json_and_labels_service_and_level_only() -> None:
    line = log_lines.a_line()
    for name, key in stage("json")["expressions"].items():
        assert key in line.fields, f"Promtail extracts {name} from {key}, which lines lack"
    assert set(stage("labels")) == {"service", "level"}
    assert line.fields["service"] == "user_svc"
    # Python's level name, one of five (the dashboards select ERROR|CRITICAL and so on).
    assert line.fields["level"] == "WARNING"
    relabelled = {rule["target_label"] for rule in promtail_job()["relabel_configs"]}
    assert relabelled == {"service", "container"}
    # Ids are parsed fields in the line, never labels (unbounded).
    for key in ("trace_id", "span_id", "request_id", "user_id", "conversion_id", "job_id"):
        assert key not in stage("labels") and key not in relabelled


def strptime_format(go_layout: str) -> str:
    for go, python in GO_LAYOUT.items():
        go_layout = go_layout.replace(go, python)
    return go_layout


def test_promtail_takes_each_line_time_from_the_line() -> None:
    timestamp = stage("timestamp")
    assert timestamp["source"] == "time"
    written = log_lines.a_line().fields["time"]
    parsed = datetime.strptime(written, strptime_format(timestamp["format"]))
    assert parsed.tzinfo is not None
    assert abs(parsed.timestamp() - datetime.now().timestamp()) < 60


def test_non_json_lines_of_the_workers_get_the_service_name_json_lines_have() -> None:
    rules = promtail_job()["relabel_configs"]
    renamed = [r for r in rules if r.get("source_labels") == ["service"]]
    assert renamed == [
        {
            "source_labels": ["service"],
            "regex": "worker",
            "target_label": "service",
            "replacement": "job_worker",
        }
    ]


def test_promtail_sends_to_loki_and_keeps_its_positions_on_a_volume() -> None:
    loaded = files.read_yaml(files.PROMTAIL_CONFIG)
    (client,) = loaded["clients"]
    assert client["url"] == "http://loki:3100/loki/api/v1/push"
    positions = loaded["positions"]["filename"]
    volumes = files.services()["promtail"]["volumes"]
    assert any(
        positions.startswith(v.split(":")[1] + "/") and not v.startswith((".", "/"))
        for v in volumes
    )


def test_loki_runs_alone_on_the_filesystem_with_retention() -> None:
    loki = files.read_yaml(files.LOKI_CONFIG)
    assert loki["auth_enabled"] is False
    assert loki["common"]["replication_factor"] == 1
    assert loki["common"]["ring"]["kvstore"]["store"] == "inmemory"
    assert "filesystem" in loki["common"]["storage"]
    (schema,) = loki["schema_config"]["configs"]
    assert (schema["store"], schema["object_store"], schema["schema"]) == (
        "tsdb",
        "filesystem",
        "v13",
    )
    assert loki["limits_config"]["retention_period"] == "168h"
    assert loki["compactor"]["retention_enabled"] is True
    assert loki["compactor"]["delete_request_store"] == "filesystem"
    # Everything Loki writes is under /loki, the named volume.
    assert loki["common"]["path_prefix"] == "/loki"
    assert "loki-data:/loki" in files.services()["loki"]["volumes"]
    assert loki["server"]["http_listen_port"] == 3100
