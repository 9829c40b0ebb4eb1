"""A real Prometheus (Debian's package) with our scrape configuration, pointed at the running
system on loopback: after the workflows run, request, job and conversion metrics read back
from Prometheus's HTTP API are non-zero, and every target is up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from internal import registry
from internal.supervisor import ROOT, System
from tests.e2e.system import whole_system
from tests.support.servers import free_port

pytestmark = pytest.mark.slow
PROMETHEUS = shutil.which("prometheus")
TARGETS = len(registry.NAMES) + 2  # the five services, the console and two workers


def prometheus_config(directory: Path, system: System) -> Path:
    """Our observability/prometheus, with loopback targets and a 1 s scrape interval."""
    shutil.copytree(ROOT / "observability" / "prometheus", directory)
    for compose_targets in (directory / "targets").glob("*.json"):
        compose_targets.unlink()
    settings = system.settings
    groups = [
        {"targets": [urlsplit(settings.url(service)).netloc], "labels": {"service": service}}
        for service in registry.NAMES
    ] + [
        {"targets": [urlsplit(url).netloc], "labels": {"service": "job_worker"}}
        for url in system.worker_metrics_urls()
    ]
    (directory / "targets" / "local.json").write_text(json.dumps(groups))
    config_file = directory / "prometheus.yml"
    config = yaml.safe_load(config_file.read_text())
    config["global"]["scrape_interval"] = "1s"
    for job in config["scrape_configs"]:
        for discovery in job.get("file_sd_configs", []):
            discovery["refresh_interval"] = "1s"
    config_file.write_text(yaml.safe_dump(config))
    return config_file


def query(url: str, expression: str) -> float:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expression}, timeout=5).json()
    assert answer["status"] == "success", answer
    results = answer["data"]["result"]
    return float(results[0]["value"][1]) if results else 0.0


def test_prometheus_scrapes_request_job_and_conversion_metrics(tmp_path: Path) -> None:
    assert PROMETHEUS, (
        "Prometheus is not installed: run `just setup-tools` (apt-get install prometheus)"
    )
    with whole_system(tmp_path / "system") as system:
        config = prometheus_config(tmp_path / "prometheus", system)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with (tmp_path / "prometheus.log").open("w") as log:
            prometheus = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            demo = subprocess.run(
                [sys.executable, str(ROOT / "cmd" / "client_svc.py"), "demo", "--timeout", "60"],
                cwd=ROOT, env={**os.environ, **system.env}, capture_output=True, text=True,
                timeout=120,
            )  # fmt: skip
            assert demo.returncode == 0, demo.stdout + demo.stderr
            expressions = {
                "requests": 'sum(mcsv_rpc_server_requests_total{code="ok"})',
                "job_svc requests": 'sum(mcsv_rpc_server_requests_total{service="job_svc"})',
                "jobs enqueued": "sum(mcsv_jobs_enqueued_total)",
                "jobs succeeded": "sum(mcsv_jobs_succeeded_total)",
                "conversions": 'sum(mcsv_conversions_total{outcome="succeeded"})',
                "conversion bytes": "sum(mcsv_conversion_bytes_out_total)",
                "emails": 'sum(mcsv_emails_total{outcome="delivered"})',
                "completed in the queue table": 'sum(mcsv_queue_jobs{state="completed"})',
                "request latency observed": "sum(mcsv_rpc_server_duration_seconds_count)",
                "targets up": 'count(up{job="mcsv"} == 1)',
            }
            deadline = time.monotonic() + 60
            values: dict[str, float] = {}
            while time.monotonic() < deadline:
                try:
                    values = {name: query(url, expr) for name, expr in expressions.items()}
                except httpx.TransportError:
                    values = {}
                if values and all(values.values()) and values["targets up"] == TARGETS:
                    break
                time.sleep(1)
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=30)
    assert values, (tmp_path / "prometheus.log").read_text()[-2000:]
    assert values["targets up"] == TARGETS
    assert values["jobs succeeded"] >= 5 and values["conversions"] >= 2
    assert all(value > 0 for value in values.values()), values
