"""The system stays up when a process is SIGKILLed: the supervisor restarts a worker and a
service (on the same port) and work started afterwards completes; `cmd/up.py` itself, as
`just up` runs it, survives a real `kill -9` of one of its children and still stops cleanly
on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from mcsv.v1 import common_pb2, user_pb2
from mcsv.v1.user_twirp import UserServiceClient

from internal.supervisor import System
from tests.e2e.images import make_image
from tests.e2e.system import (
    CONVERSION,
    EMAIL,
    as_user,
    succeeded,
    system_env,
    wait_for,
    whole_system,
)
from tests.support.servers import ROOT

pytestmark = pytest.mark.slow


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def wait_until_back(system: System, name: str, old_pid: int, probe: str) -> None:
    """Until another process of that name answers 200 at `probe`."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        system.check_alive()
        if system.pid(name) != old_pid and answers(probe):
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} did not come back at {probe}")


def test_a_killed_worker_and_a_killed_service_come_back_and_new_work_completes(
    tmp_path: Path,
) -> None:
    # One worker: the workflows below can only complete if it came back.
    with whole_system(tmp_path, workers=1, restart=True) as system:
        users_url = system.settings.url("user_svc")
        [metrics] = system.worker_metrics_urls()
        for name, probe in (("worker-1", f"{metrics}/metrics"), ("user_svc", f"{users_url}/ready")):
            before = system.pid(name)
            os.kill(before, signal.SIGKILL)  # as from outside: not System.kill, which is on purpose
            wait_until_back(system, name, before, probe)

        with UserServiceClient(users_url) as users:
            owner = users.create_user(
                user_pb2.CreateUserRequest(name="After", email="after@example.com")
            ).user
            conversion = users.convert_image(
                user_pb2.ConvertImageRequest(
                    user_id=owner.id,
                    filename="after.png",
                    image_data=make_image("png", 300, 200),
                    options=common_pb2.ConversionOptions(quality=common_pb2.PDF_QUALITY_LOW),
                ),
                headers=as_user(system.settings, owner.id),
            ).conversion
        assert succeeded(wait_for(system, EMAIL, {owner.id})[owner.id])
        assert succeeded(wait_for(system, CONVERSION, {conversion.id})[conversion.id])

    log = (tmp_path / "system.log").read_text()
    assert "worker-1 killed by SIGKILL; restart 1 in " in log
    assert f"worker-1 is ready again at {metrics}/metrics" in log
    assert "user_svc killed by SIGKILL; restart 1 in " in log
    assert f"user_svc is ready again at {users_url}/ready" in log


def children_of(pid: int) -> dict[int, str]:
    """The live child processes of `pid` and their command lines, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if int(ppid) == pid and state != "Z":
            found[int(entry.name)] = cmdline
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_up_keeps_serving_through_a_kill_9_of_a_child_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path,
) -> None:
    env = {**os.environ, **system_env(tmp_path)}
    up = subprocess.Popen(
        [sys.executable, str(ROOT / "cmd" / "up.py"), "--workers", "1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    assert up.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(up.stdout or []), daemon=True)
    reader.start()

    def wait_for_line(text: str) -> str:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            for line in list(lines):
                if text in line:
                    return line
            assert up.poll() is None, f"up exited with {up.returncode}:\n{''.join(lines)}"
            time.sleep(0.1)
        raise AssertionError(f"up never printed {text!r}:\n{''.join(lines)}")

    seen: set[int] = set()
    try:
        wait_for_line("mcsv is up:")
        children = children_of(up.pid)
        seen |= set(children)
        assert len(children) == 7, children  # five services, the console, one worker
        user_svc = next(pid for pid, cmd in children.items() if cmd.endswith("cmd/user_svc.py"))

        os.kill(user_svc, signal.SIGKILL)
        wait_for_line("user_svc killed by SIGKILL; restart 1 in ")
        wait_for_line(f"user_svc is ready again at {env['USER_SVC_URL']}/ready")
        assert answers(f"{env['USER_SVC_URL']}/ready")
        children = children_of(up.pid)
        seen |= set(children)
        assert user_svc not in children and len(children) == 7, children
        assert up.poll() is None

        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0, "".join(lines)
        reader.join(timeout=10)
        assert "stopping…" in "".join(lines)
        assert [pid for pid in seen if alive(pid)] == []
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        for pid in seen:  # each child leads its own process group
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)
