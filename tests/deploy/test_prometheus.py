"""observability/prometheus: the scrape configuration and the alerting rules, checked by
Prometheus's own promtool, and tied to the metrics we export and to the compose stack."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from internal import registry
from internal.observability.metrics import EXPORTED_NAMES
from tests.deploy import files, promql

HERE = Path(__file__).parent


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [files.promtool(), *map(str, args)], capture_output=True, text=True, timeout=60
    )


def test_promtool_accepts_the_scrape_config() -> None:
    checked = run_promtool("check", "config", files.PROMETHEUS_CONFIG)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout


def test_the_scrape_config_works_from_a_copy_with_its_own_targets(tmp_path: Path) -> None:
    """What a test on loopback ports does: copy the directory, replace the targets."""
    copy = tmp_path / "prometheus"
    shutil.copytree(files.PROMETHEUS_DIR, copy)
    (copy / "targets" / "compose.json").unlink()
    (copy / "targets" / "loopback.json").write_text(
        '[{"targets": ["127.0.0.1:18081"], "labels": {"service": "user_svc"}}]'
    )
    checked = run_promtool("check", "config", copy / "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_accepts_the_alerting_rules() -> None:
    checked = run_promtool("check", "rules", files.ALERTS)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_each_alert_fires_when_it_should_and_only_then() -> None:
    """tests/deploy/alerts_test.yml: sample series for every alert, with the expected
    alerts (labels and rendered annotations) before and after their `for` duration."""
    tested = run_promtool("test", "rules", HERE / "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def alert_rules() -> list[dict[str, Any]]:
    groups = files.read_yaml(files.ALERTS)["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_alerts_the_issue_asks_for_exist_and_are_tested() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert names == {
        "TwirpErrorRatioHigh",
        "TargetDown",
        "JobQueueBacklog",
        "JobsDiscarded",
        "ConversionFailureRatioHigh",
    }
    unit_tests = files.read_yaml(HERE / "alerts_test.yml")["tests"]
    tested = {case["alertname"] for test in unit_tests for case in test["alert_rule_test"]}
    assert tested == names


def test_alert_rules_name_only_metrics_we_export_with_their_labels() -> None:
    for rule in alert_rules():
        assert promql.problems(rule["expr"]) == [], rule["alert"]


def test_exported_names_lists_exactly_the_metrics_defined() -> None:
    """EXPORTED_NAMES (what the dashboards are checked against) agrees with the metric
    objects themselves."""
    assert promql.exported_base_names() == set(EXPORTED_NAMES)


def test_compose_targets_are_the_five_services_on_their_compose_addresses() -> None:
    targets = {
        target: group["labels"]["service"]
        for group in files.read_json(files.COMPOSE_TARGETS)
        for target in group["targets"]
    }
    expected = {f"{s.name}:{s.default_port}": s.name for s in registry.SERVICES}
    assert targets == expected
    for target, service in targets.items():
        url = files.environment(service)[registry.BY_NAME[service].url_variable]
        assert url == f"http://{target}", f"{service} answers at {url}, scraped at {target}"


def test_every_worker_replica_is_scraped_on_its_metrics_port() -> None:
    scrape = files.read_yaml(files.PROMETHEUS_CONFIG)["scrape_configs"]
    workers = next(job for job in scrape if job["job_name"] == "mcsv-workers")
    (discovery,) = workers["dns_sd_configs"]
    assert discovery["names"] == ["worker"]
    assert "worker" in files.services()
    # The worker listens on all its interfaces, on the port Prometheus scrapes.
    listens = urlsplit(files.environment("worker")["WORKER_METRICS_URL"])
    assert (listens.hostname, listens.port) == ("0.0.0.0", discovery["port"])
    assert {"target_label": "service", "replacement": "job_worker"} in workers["relabel_configs"]


def test_file_targets_are_read_relative_to_the_config() -> None:
    scrape = files.read_yaml(files.PROMETHEUS_CONFIG)["scrape_configs"]
    services = next(job for job in scrape if job["job_name"] == "mcsv")
    (discovery,) = services["file_sd_configs"]
    assert discovery["files"] == ["targets/*.json", "targets-extra/*.json"]
    # Our metrics' own service label must win over the target's, not become exported_service.
    assert services["honor_labels"] is True
