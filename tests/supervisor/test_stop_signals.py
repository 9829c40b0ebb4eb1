"""A process waiting for SIGTERM/SIGINT (internal.signals.StopSignals, as `just up` and the job
workers wait) stops however the signals come: one, or a burst of both back to back, which
deadlocked handlers that set a threading.Event (the second handler waited for the lock the
interrupted first one held)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.support.servers import ROOT

WAITER = """
import sys, time
from internal.signals import StopSignals
stop = StopSignals()
print("waiting", flush=True)
while not stop.wait(0.5):
    pass
print("stopped", flush=True)
"""


def _waiter() -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", WAITER], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline() == "waiting\n"
    return process


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_one_signal_stops_the_waiter(sig: signal.Signals) -> None:
    process = _waiter()
    process.send_signal(sig)
    out, _ = process.communicate(timeout=10)
    assert (process.returncode, out) == (0, "stopped\n")


def test_a_burst_of_signals_stops_the_waiter() -> None:
    for _ in range(10):  # the old handlers hung about once in five such bursts
        process = _waiter()
        for _ in range(200):
            process.send_signal(signal.SIGTERM)
            process.send_signal(signal.SIGINT)
        try:
            out, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("the waiter hung on a burst of stop signals")
        assert out == "stopped\n"
        # Signals still arriving once it has begun to exit end it as such signals do.
        assert process.returncode in (0, -signal.SIGTERM, -signal.SIGINT)
        time.sleep(0.01)
