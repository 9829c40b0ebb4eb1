"""The client's open-loop load mode (`client load --rate R`), against the whole system on the
embedded defaults: workflows start on their schedule even while the system is stalled, and a
stall shows in the latencies, counted from each workflow's scheduled start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from internal.supervisor import ROOT, System
from tests.e2e.system import paused, whole_system


def open_loop(system: System, rate: int, users: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "cmd" / "client_svc.py"), "load", "--quiet", "--json",
         "--rate", str(rate), "--users", str(users), "--timeout", "120"],
        env={**os.environ, **system.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=ROOT,
    )  # fmt: skip


def figures(run: subprocess.Popen[str]) -> tuple[str, dict[str, Any]]:
    out, err = run.communicate(timeout=180)
    assert run.returncode == 0, out + err
    return out, json.loads(out.strip().splitlines()[-1])


def test_the_open_loop_starts_on_schedule_and_counts_a_stall_in_the_latency(
    tmp_path: Path,
) -> None:
    with whole_system(tmp_path) as system:
        out, calm = figures(open_loop(system, rate=20, users=20))
        assert "welcome emails: 20 started, 20 completed, 0 failed, 0 missing" in out
        assert "offered 20/s" in out
        assert calm["offered_rate"] == 20
        assert calm["emails"]["completed"] == 20
        # 20 starts at 20/s take about a second: the schedule, not the answers, sets the pace.
        assert 0.9 <= calm["sent_in_s"] < 5

        # user_svc hangs for 2 s in the middle of a run: the starts go on (they wait in the
        # client), and the workflows scheduled during the stall are late by up to its length.
        run = open_loop(system, rate=20, users=60)
        assert run.stderr is not None
        assert run.stderr.readline().startswith("load: 60 users started at 20/s")  # starting
        time.sleep(0.5)
        with paused(system, "user_svc"):
            time.sleep(2.0)
        out, stalled = figures(run)
        emails = stalled["emails"]
        assert emails["completed"] == emails["started"] == 60, out
        assert emails["max_ms"] >= 1500, out
        assert emails["max_ms"] > 2 * calm["emails"]["max_ms"], out
