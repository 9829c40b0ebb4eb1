"""A small process supervisor: the five services and the job workers as child processes, their
output interleaved with a name prefix, readiness awaited, everything stopped cleanly.
`just up` uses it from cmd/up.py; the end-to-end tests use System directly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx

from internal import config, registry

ROOT = Path(__file__).resolve().parents[1]
COLOURS = {service.name: service.log_colour for service in registry.SERVICES}


class SupervisorError(RuntimeError):
    """A process would not start, or did not become ready in time."""


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a .env file (comments and blank lines skipped)."""
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    expected_exit: bool = False


@dataclass
class System:
    """The whole system as processes, configured by `env` (merged over os.environ)."""

    env: Mapping[str, str]
    workers: int = 2
    worker_threads: int = 4
    output: IO[str] | None = None  # None: discard children's output
    colour: bool = False
    children: dict[str, Child] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def settings(self) -> config.Settings:
        return config.load({**os.environ, **self.env})

    def start(self, ready_timeout: float = 60) -> None:
        """One process per replica URL of each service (see *_SVC_URL), then the workers."""
        settings = self.settings
        for service in registry.NAMES:
            for replica, url in enumerate(settings.urls(service), start=1):
                name = service if replica == 1 else f"{service}-{replica}"
                argv = [sys.executable, str(ROOT / "cmd" / f"{service}.py")]
                self.start_child(name, argv, {"SERVICE_BIND": urlsplit(url).netloc})
        for index in range(1, self.workers + 1):
            self.start_worker(index)
        self.wait_ready(ready_timeout)

    def start_worker(self, index: int) -> str:
        name = f"worker-{index}"
        argv = [sys.executable, str(ROOT / "cmd" / "job_worker.py"),
                "--threads", str(self.worker_threads)]  # fmt: skip
        host, port = self.settings.worker_metrics_bind()
        self.start_child(name, argv, {"WORKER_METRICS_URL": f"http://{host}:{port + index - 1}"})
        return name

    def worker_metrics_urls(self) -> list[str]:
        return [
            c.env["WORKER_METRICS_URL"]
            for c in self.children.values()
            if "WORKER_METRICS_URL" in c.env
        ]

    def start_child(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> None:
        child = Child(name, argv, dict(env or {}))
        child.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **self.env, **child.env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE if self.output else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our signals, not the terminal's, stop it
        )
        self.children[name] = child
        if self.output is not None and child.process.stdout is not None:
            threading.Thread(target=self._relay, args=(child,), daemon=True).start()

    def _relay(self, child: Child) -> None:
        assert child.process is not None and child.process.stdout is not None
        prefix = f"{child.name:<10} | "
        if self.colour:
            prefix = f"\033[{COLOURS.get(child.name, 37)}m{prefix}\033[0m"
        for raw in child.process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._lock:
                assert self.output is not None
                print(prefix + line, file=self.output, flush=True)

    def wait_ready(self, timeout: float) -> None:
        """Waits until every service answers 200 on /ready; fails early if a process exits."""
        deadline = time.monotonic() + timeout
        settings = self.settings
        pending = {url for service in registry.NAMES for url in settings.urls(service)}
        while pending:
            self.check_alive()
            for url in sorted(pending):
                try:
                    answer = httpx.get(url + "/ready", timeout=2)
                except httpx.TransportError:
                    continue
                if answer.status_code == 200:
                    pending.discard(url)
            if pending and time.monotonic() > deadline:
                raise SupervisorError(
                    f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}"
                )
            time.sleep(0.1)

    def check_alive(self) -> None:
        for child in self.children.values():
            code = child.process.poll() if child.process else None
            if code is not None and not child.expected_exit:
                raise SupervisorError(f"{child.name} exited with status {code}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Sends a signal to a child (and its process group), e.g. to crash a worker."""
        child = self.children[name]
        child.expected_exit = True
        if child.process and child.process.poll() is None:
            os.killpg(child.process.pid, sig)
            child.process.wait(timeout=30)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM to every child, then SIGKILL to those still running after `timeout`."""
        running = [c for c in self.children.values() if c.process and c.process.poll() is None]
        for child in running:
            child.expected_exit = True
            assert child.process is not None
            os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()


@contextmanager
def running(system: System, ready_timeout: float = 60) -> Iterator[System]:
    try:
        system.start(ready_timeout)
        yield system
    finally:
        system.stop()
