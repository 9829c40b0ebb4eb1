"""A small process supervisor: the five services and the job workers as child processes, their
output interleaved with a name prefix, readiness awaited, everything stopped cleanly.
`just up` uses it from cmd/up.py; the end-to-end tests use System directly.

With restart=True (as `just up` runs it) a child that exits on its own is started again, with
the same arguments and environment (so on the same port), in the manner of OTP's one_for_one
supervisor: after a backoff doubling from SUPERVISOR_MIN_BACKOFF_MS to
SUPERVISOR_MAX_BACKOFF_MS (afresh once a child has stayed up SUPERVISOR_STABLE_SECONDS), and
only up to SUPERVISOR_MAX_RESTARTS restarts of all children together within
SUPERVISOR_RESTART_PERIOD_SECONDS; past that it gives up and stops everything. Without it
(the default, for tests that take parts down on purpose) a child that exits is an error that
check_alive reports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
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


@dataclass(frozen=True)
class RestartPolicy:
    """How crashed children are restarted (see the module docstring)."""

    min_backoff: float = 0.5
    max_backoff: float = 10.0
    stable_after: float = 30.0  # seconds up after which a child's backoff starts afresh
    max_restarts: int = 10  # restarts of all children together ...
    period: float = 60.0  # ... within this many seconds, before giving up

    @classmethod
    def from_settings(cls, settings: config.Settings) -> RestartPolicy:
        return cls(
            min_backoff=settings.supervisor_min_backoff_ms / 1000,
            max_backoff=settings.supervisor_max_backoff_ms / 1000,
            stable_after=settings.supervisor_stable_seconds,
            max_restarts=settings.supervisor_max_restarts,
            period=settings.supervisor_restart_period_seconds,
        )

    def backoff(self, attempt: int) -> float:
        """The delay before a child's `attempt`-th restart in a row (1, 2, ...)."""
        return min(self.max_backoff, self.min_backoff * 2.0 ** (attempt - 1))


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    expected_exit: bool = False  # stopped on purpose: not restarted, not an error
    probe: str | None = None  # a URL that answers once the process is ready
    started_at: float = 0.0
    attempt: int = 0  # restarts in a row, without a stable run in between
    restart_at: float | None = None  # set while a crashed child waits for its restart


def describe_exit(code: int) -> str:
    """'exited with status 3' or 'killed by SIGKILL' (Popen's negative return codes)."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


@dataclass
class System:
    """The whole system as processes, configured by `env` (merged over os.environ)."""

    env: Mapping[str, str]
    workers: int = 2
    worker_threads: int = 8  # as cmd/job_worker.py's default
    output: IO[str] | None = None  # None: discard children's output
    colour: bool = False
    restart: bool = False  # restart crashed children (see the module docstring)
    children: dict[str, Child] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)  # output lines
    _state: threading.RLock = field(default_factory=threading.RLock)  # children, restarts
    _halt: threading.Event = field(default_factory=threading.Event)
    _monitor: threading.Thread | None = None
    _restarts: deque[float] = field(default_factory=deque)  # when each recent restart was due
    _gave_up: str | None = None
    _relays: list[threading.Thread] = field(default_factory=list)  # output of each process

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
                bind = {"SERVICE_BIND": urlsplit(url).netloc}
                self.start_child(name, argv, bind, probe=f"{url}/ready")
        for index in range(1, self.workers + 1):
            self.start_worker(index)
        self.wait_ready(ready_timeout)

    def start_worker(self, index: int) -> str:
        name = f"worker-{index}"
        argv = [sys.executable, str(ROOT / "cmd" / "job_worker.py"),
                "--threads", str(self.worker_threads)]  # fmt: skip
        host, port = self.settings.worker_metrics_bind()
        metrics = f"http://{host}:{port + index - 1}"
        self.start_child(name, argv, {"WORKER_METRICS_URL": metrics}, probe=f"{metrics}/metrics")
        return name

    def worker_metrics_urls(self) -> list[str]:
        return [
            c.env["WORKER_METRICS_URL"]
            for c in self.children.values()
            if "WORKER_METRICS_URL" in c.env
        ]

    def start_child(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str] | None = None,
        probe: str | None = None,
    ) -> None:
        """Starts a process (replacing a stopped child of that name); with restart=True it is
        restarted whenever it exits on its own."""
        child = Child(name, argv, dict(env or {}), probe=probe)
        with self._state:
            self._spawn(child)
            self.children[name] = child
            if self.restart and self._monitor is None:
                self._monitor = threading.Thread(
                    target=self._supervise, name="supervisor", daemon=True
                )
                self._monitor.start()

    def _spawn(self, child: Child) -> None:
        process = subprocess.Popen(
            child.argv,
            cwd=ROOT,
            env={**os.environ, **self.env, **child.env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE if self.output else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our signals, not the terminal's, stop it
        )
        child.process, child.started_at, child.restart_at = process, time.monotonic(), None
        if self.output is not None and process.stdout is not None:
            relay = threading.Thread(target=self._relay, args=(child.name, process), daemon=True)
            relay.start()
            self._relays = [r for r in self._relays if r.is_alive()] + [relay]

    def _relay(self, name: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            self._print(name, raw.decode(errors="replace").rstrip("\n"))

    def _print(self, name: str, line: str) -> None:
        if self.output is None:
            return
        prefix = f"{name:<10} | "
        if self.colour:
            prefix = f"\033[{COLOURS.get(name, 37)}m{prefix}\033[0m"
        with self._lock:
            if not self.output.closed:  # a late line after the caller closed it is dropped
                print(prefix + line, file=self.output, flush=True)

    def _say(self, message: str) -> None:
        """A line of the supervisor's own, among the children's."""
        self._print("supervisor", message)

    def pid(self, name: str) -> int:
        """The process id of a child's current process."""
        process = self.children[name].process
        assert process is not None
        return process.pid

    def _supervise(self) -> None:
        policy = RestartPolicy.from_settings(self.settings)
        while not self._halt.wait(0.1):
            with self._state:
                if self._halt.is_set():
                    return
                for child in list(self.children.values()):
                    if not self._tend(child, policy):
                        return

    def _tend(self, child: Child, policy: RestartPolicy) -> bool:
        """Restarts `child` if it crashed and its backoff is over; False once given up."""
        now = time.monotonic()
        if child.expected_exit or child.process is None:
            return True
        if child.restart_at is not None:
            if now >= child.restart_at:
                self._spawn(child)
                self._say(f"{child.name} restarted (pid {child.process.pid})")
                if child.probe:
                    threading.Thread(
                        target=self._announce_ready, args=(child, child.process), daemon=True
                    ).start()
            return True
        code = child.process.poll()
        if code is None:
            return True
        _kill_group(child.process.pid)  # anything it left behind (e.g. an ImageMagick run)
        while self._restarts and now - self._restarts[0] > policy.period:
            self._restarts.popleft()
        if len(self._restarts) >= policy.max_restarts:
            reason = (
                f"{child.name} {describe_exit(code)} after {len(self._restarts)} restarts within "
                f"{policy.period:g}s (SUPERVISOR_MAX_RESTARTS={policy.max_restarts}, "
                f"SUPERVISOR_RESTART_PERIOD_SECONDS={policy.period:g}); giving up"
            )
            self._say(f"{reason}, stopping everything")
            self._halt.set()
            self._stop_children(timeout=15)
            self._say("stopped everything")
            self._gave_up = reason  # check_alive raises from now on
            return False
        self._restarts.append(now)
        if now - child.started_at >= policy.stable_after:
            child.attempt = 0
        child.attempt += 1
        delay = policy.backoff(child.attempt)
        child.restart_at = now + delay
        self._say(
            f"{child.name} {describe_exit(code)}; restart {child.attempt} in {delay:g}s "
            f"({len(self._restarts)} of at most {policy.max_restarts} restarts within "
            f"{policy.period:g}s)"
        )
        return True

    def _announce_ready(self, child: Child, process: subprocess.Popen[bytes]) -> None:
        """Logs when a restarted child answers its probe (services: /ready is 200)."""
        assert child.probe is not None
        deadline = time.monotonic() + 120
        while process.poll() is None and not self._halt.is_set() and time.monotonic() < deadline:
            try:
                if httpx.get(child.probe, timeout=2).status_code == 200:
                    self._say(f"{child.name} is ready again at {child.probe}")
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)

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
        """Raises SupervisorError once the supervisor gave up (restart=True), or when a child
        exited that was not stopped on purpose (restart=False)."""
        if self._gave_up is not None:
            raise SupervisorError(self._gave_up)
        if self.restart:
            return  # a crashed child is being restarted
        for child in self.children.values():
            code = child.process.poll() if child.process else None
            if code is not None and not child.expected_exit:
                raise SupervisorError(f"{child.name} {describe_exit(code)}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Sends a signal to a child (and its process group) and waits for it to end: a part
        taken down on purpose, which is not restarted (start_child brings it back)."""
        with self._state:
            child = self.children[name]
            child.expected_exit = True
        if child.process and child.process.poll() is None:
            os.killpg(child.process.pid, sig)
            child.process.wait(timeout=30)

    def stop(self, timeout: float = 15) -> None:
        """Stops restarting, then SIGTERM to every child and SIGKILL to those still running
        after `timeout`."""
        with self._state:
            self._halt.set()
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join()
        self._stop_children(timeout)

    def _stop_children(self, timeout: float) -> None:
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
        deadline = time.monotonic() + 5
        for relay in list(self._relays):  # their last lines, e.g. why they stopped
            relay.join(timeout=max(0.1, deadline - time.monotonic()))


def _kill_group(pgid: int) -> None:
    """SIGKILL to what is left of a dead child's process group (its own subprocesses)."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@contextmanager
def running(system: System, ready_timeout: float = 60) -> Iterator[System]:
    try:
        system.start(ready_timeout)
        yield system
    finally:
        system.stop()
