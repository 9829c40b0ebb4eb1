"""Stopping a service as the supervisor does (SIGTERM), served as the services are
(internal.services.common.app.run): a request in flight when the signal comes is still
answered, nothing new is accepted, and the process exits 0 (the supervisor and the chaos run
read a clean stop from that)."""

from __future__ import annotations

import email.utils
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.servers import ROOT, free_port

GET_JOB = "/twirp/mcsv.v1.JobService/GetJob"
OPERATOR_TOKEN = "test-operator-token-for-the-graceful-stop"


def _start(port: int, data: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MCSV_DATA_DIR": str(data),
           "OPERATOR_TOKEN": OPERATOR_TOKEN, "RPC_BODY_TIMEOUT_SECONDS": "10"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.service_process", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError(f"the service did not start: {process.communicate()[0]!r}")


def test_sigterm_finishes_the_request_in_flight_and_exits_0(tmp_path: Path) -> None:
    port = free_port()
    process = _start(port, tmp_path)
    body = b"\x0a\x02id"  # GetJobRequest(id="id"): the echo service answers invalid_argument
    head = (
        f"POST {GET_JOB} HTTP/1.1\r\nHost: test\r\nContent-Type: application/protobuf\r\n"
        f"Authorization: Bearer {OPERATOR_TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode("ascii") + body[:1])  # in flight: its body is on the way
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with socket.socket() as late:  # stopped accepting
            assert late.connect_ex(("127.0.0.1", port)) != 0
        sock.sendall(body[1:])
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    status_line = bytes(received).split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 400 Bad Request", bytes(received)  # answered by the handler
    assert b'"code":"invalid_argument"' in bytes(received).replace(b" ", b"")
    output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert b'"level": "ERROR"' not in output, output


def _loop_wakeups(pid: int) -> int:
    """Voluntary context switches of the process's main thread (the event loop's): each is
    a wait that blocked, i.e. a wake-up."""
    status = Path(f"/proc/{pid}/task/{pid}/status").read_text()
    return int(status.split("voluntary_ctxt_switches:")[1].split()[0])


def test_an_idle_service_wakes_about_once_a_second_and_its_date_header_stays_current(
    tmp_path: Path,
) -> None:
    # uvicorn's own loop wakes ten times a second to look for a stop; an idle service's does
    # once (to renew the Date header), and a signal stops it at once (the test above).
    port = free_port()
    process = _start(port, tmp_path)
    try:
        time.sleep(1.0)  # the start's own work done
        before = _loop_wakeups(process.pid)
        time.sleep(4.0)
        woken = _loop_wakeups(process.pid) - before
        assert woken <= 10, f"the idle event loop woke {woken} times in 4 s"
        answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        date = email.utils.parsedate_to_datetime(answer.headers["date"]).timestamp()
        assert abs(date - time.time()) <= 2.5, answer.headers["date"]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
