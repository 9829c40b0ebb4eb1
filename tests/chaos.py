"""Chaos run (`just chaos`): the whole system under the supervisor with restarts on, driven by
the client's load mode, while processes are killed and one is hung; then an account of
everything the user could have lost.

  1. The five services and the workers start on free loopback ports in a fresh data directory,
     with every other setting at its default (or as --set gives it), on the backend chosen:
     the embedded default, or PostgreSQL + RabbitMQ (or Redis) + S3 on this machine's servers
     with moto for S3 (see tests/e2e/backends.py).
  2. `cmd/client_svc.py load` starts the welcome-email workflows and the conversions.
  3. Meanwhile, one after the other, each at a share of the run's progress (jobs created plus
     workflows finished, out of twice the workflows): SIGKILL to user_svc and to worker-1,
     SIGSTOP to email_svc for --stop-seconds then SIGCONT, and SIGKILL to job_svc. Each waits
     until the supervisor has brought the last one back.
  4. Once the load has finished and the jobs have settled it prints, per workflow kind,
     completed / failed / missing (and refused at start); duplicate emails (per idempotency
     key, per user and template) and notifications (per workflow), read through
     EmailService.ListEmails and ClientService.ListNotifications; completed workflows whose
     email is not in the mailbox, and emails of workflows the client does not know as
     completed; jobs not in a final state (GetQueueStats, ListJobs); and
     PRAGMA integrity_check of every SQLite database in the data directory, the system
     stopped.

It exits 0 only when all of that is perfect, 1 otherwise. tests/e2e/test_chaos.py runs a
smaller one on two backends."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from mcsv.twirp import TwirpError
from mcsv.v1 import client_pb2, common_pb2, email_pb2, job_pb2
from mcsv.v1.client_twirp import ClientServiceClient
from mcsv.v1.email_twirp import EmailServiceClient
from mcsv.v1.job_twirp import JobServiceClient

from internal import registry
from internal.auth import OPERATOR
from internal.peers import SyncPeers
from internal.supervisor import SupervisorError, System, running
from tests.e2e.backends import BACKENDS, backend_env
from tests.support.servers import ROOT, free_port, free_ports_in_a_row, s3_server

UNFINISHED = ("available", "scheduled", "executing", "retryable")
FINISHED = ("completed", "discarded", "cancelled")
WELCOME = common_pb2.EMAIL_TEMPLATE_WELCOME
CONVERSION_EMAIL = common_pb2.EMAIL_TEMPLATE_CONVERSION_COMPLETE
# A summary line of the load mode, e.g. "welcome emails: 301 started, 300 completed, 0 failed,
# 1 missing, 2 refused at start".
SUMMARY = re.compile(
    r"^(?P<name>welcome emails|conversions): (?P<started>\d+) started, (?P<completed>\d+) "
    r"completed, (?P<failed>\d+) failed, (?P<missing>\d+) missing"
    r"(?:, (?P<refused>\d+) refused at start)?"
)


@dataclass(frozen=True)
class Fault:
    """One blow: SIGKILL to a process (the supervisor restarts it), or SIGSTOP then SIGCONT."""

    at: float  # the share of the run's progress at which it falls, 0 to 1
    signal: signal.Signals  # SIGKILL or SIGSTOP
    target: str  # the supervisor's name of the process


SCHEDULE = (
    Fault(0.10, signal.SIGKILL, "user_svc"),
    Fault(0.25, signal.SIGKILL, "worker-1"),
    Fault(0.40, signal.SIGSTOP, "email_svc"),
    Fault(0.60, signal.SIGKILL, "job_svc"),
)


@dataclass(frozen=True)
class Options:
    users: int = 3000
    images: int = 20
    concurrency: int = 10
    workers: int = 2
    backend: str = "embedded"
    stop_seconds: float = 30.0  # how long email_svc hangs
    timeout: float = 600.0  # how long the load waits for the workflows' callbacks
    settle_seconds: float = 60.0  # how long to wait, after the load, for jobs to finish
    data_dir: Path | None = None  # None: a temporary directory, removed afterwards
    settings: dict[str, str] = field(default_factory=dict)  # extra KEY=VALUE settings
    s3_endpoint: str | None = None  # a running S3 server; None: moto, started when needed


@dataclass
class Kind:
    """What the load reported for one kind of workflow."""

    name: str
    expected: int
    started: int = 0
    completed: int = 0
    failed: int = 0
    missing: int = 0
    refused: int = 0

    def line(self) -> str:
        return (
            f"{self.name}: {self.expected} expected, {self.started} started, "
            f"{self.completed} completed, {self.failed} failed, {self.missing} missing, "
            f"{self.refused} refused at start"
        )

    @property
    def perfect(self) -> bool:
        return (
            self.completed == self.expected
            and self.started == self.expected
            and not (self.failed or self.missing or self.refused)
        )


@dataclass
class Report:
    """The account, as printed: `lines`; and what is not perfect: `problems`."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    kinds: dict[str, Kind] = field(default_factory=dict)
    duplicate_emails: int = 0
    duplicate_notifications: int = 0
    emails_missing: int = 0
    unknown_emails: int = 0
    unfinished_jobs: int = 0
    corrupt_databases: int = 0

    @property
    def perfect(self) -> bool:
        return not self.problems

    def say(self, line: str, out: IO[str]) -> None:
        self.lines.append(line)
        print(line, file=out, flush=True)


def chaos_env(data_dir: Path, backend: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """Free loopback ports and a data directory; every other setting its default, but for the
    backend's and --set's."""
    env = {"MCSV_DATA_DIR": str(data_dir)}
    for service in registry.SERVICES:
        env[service.url_variable] = f"http://127.0.0.1:{free_port()}"
    env["WORKER_METRICS_URL"] = f"http://127.0.0.1:{free_ports_in_a_row()}"
    return {**env, **backend, **extra}


def run(options: Options, out: IO[str] = sys.stdout) -> Report:
    """One chaos run, printed to `out` as it goes; the report."""
    report = Report()
    data_dir = options.data_dir or Path(tempfile.mkdtemp(prefix="mcsv-chaos-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        s3 = options.s3_endpoint
        if s3 is None and options.backend != "embedded":
            s3 = stack.enter_context(s3_server())
        backend = stack.enter_context(backend_env(options.backend, s3 or ""))
        env = chaos_env(data_dir, backend, options.settings)
        log = stack.enter_context((data_dir / "system.log").open("w"))
        system = System(env=env, workers=options.workers, output=log, restart=True)
        report.say(
            f"chaos: {options.users} welcome workflows and {options.images} conversions at "
            f"concurrency {options.concurrency}, {options.workers} workers, backend "
            f"{options.backend}; email_svc hangs {options.stop_seconds:g} s; data in {data_dir}",
            out,
        )
        try:
            with running(system):
                _drive(system, options, data_dir, report, out)
                _account(system, options, report, out)
        except SupervisorError as exc:
            report.problems.append(f"the supervisor: {exc}")
            report.say(f"the supervisor failed: {exc}", out)
        except (TwirpError, httpx.HTTPError) as exc:  # a service would not answer at the end
            report.problems.append(f"no account: {exc}")
            report.say(f"the account could not be taken: {exc}", out)
        _check_databases(data_dir, report, out)  # the system stopped
        _check_restarts(data_dir / "system.log", report, out)
        report.say(_verdict(report), out)
    if options.data_dir is None:
        if report.perfect:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            print(f"chaos: data and logs kept in {data_dir}", file=out, flush=True)
    return report


def _drive(system: System, options: Options, data_dir: Path, report: Report, out: IO[str]) -> None:
    """Runs the load while the faults fall; fills in the load's counts."""
    argv = [
        sys.executable, str(ROOT / "cmd" / "client_svc.py"), "load",
        "--users", str(options.users), "--images", str(options.images),
        "--concurrency", str(options.concurrency), "--timeout", f"{options.timeout:g}", "--quiet",
    ]  # fmt: skip
    expected = options.users + options.images + (1 if options.images else 0)
    started = time.monotonic()
    with (data_dir / "load.log").open("w") as load_log:
        load = subprocess.Popen(
            argv, cwd=ROOT, env={**os.environ, **system.env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE, stderr=load_log, text=True,
        )  # fmt: skip
        try:
            with Progress(system, expected) as progress:
                for fault in SCHEDULE:
                    while progress.share() < fault.at and load.poll() is None:
                        system.check_alive()
                        time.sleep(0.2)
                    late = " (the load had finished)" if load.poll() is not None else ""
                    share = progress.share()
                    elapsed = time.monotonic() - started
                    report.say(
                        f"  {elapsed:6.1f}s  progress {share:4.0%}  {fault.signal.name} "
                        f"{fault.target}{late}",
                        out,
                    )
                    _strike(system, fault, options.stop_seconds, report, out, started)
            stdout, _ = load.communicate(timeout=options.timeout + 600)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
    elapsed = time.monotonic() - started
    report.say(f"  {elapsed:6.1f}s  the load finished with status {load.returncode}", out)
    _read_load(stdout, options, report, out)


def _strike(
    system: System,
    fault: Fault,
    stop_seconds: float,
    report: Report,
    out: IO[str],
    started: float,
) -> None:
    pid = system.pid(fault.target)
    if fault.signal == signal.SIGSTOP:
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(stop_seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
        report.say(f"  {time.monotonic() - started:6.1f}s  SIGCONT {fault.target}", out)
        return
    os.kill(pid, fault.signal)
    probe = system.children[fault.target].probe
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        system.check_alive()
        if system.pid(fault.target) != pid and probe is not None and _answers(probe):
            report.say(
                f"  {time.monotonic() - started:6.1f}s  {fault.target} is back "
                f"(pid {system.pid(fault.target)})",
                out,
            )
            return
        time.sleep(0.1)
    report.problems.append(f"{fault.target} did not come back within 120 s")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


class Progress:
    """How far the run is, from the services: jobs created (job_svc) plus workflows finished
    (client_svc's notifications), out of twice the workflows. While a service is down the
    last figure stands."""

    def __init__(self, system: System, expected: int) -> None:
        self.peers = SyncPeers(system.settings, identity=OPERATOR)  # admin reads
        self.jobs = self.peers.client(JobServiceClient, timeout=2)
        self.notifications = self.peers.client(ClientServiceClient, timeout=2)
        self.expected = max(1, expected)
        self.created = self.finished = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: object) -> None:
        self.peers.close()

    def share(self) -> float:
        try:
            stats = self.jobs.get_queue_stats(job_pb2.GetQueueStatsRequest()).queues
            self.created = sum(
                getattr(queue, state) for queue in stats for state in UNFINISHED + FINISHED
            )
        except (TwirpError, httpx.HTTPError):
            pass
        try:
            latest = self.notifications.list_notifications(
                client_pb2.ListNotificationsRequest(page_size=1)
            )
            self.finished = latest.latest_sequence
        except (TwirpError, httpx.HTTPError):
            pass
        return min(1.0, (self.created + self.finished) / (2 * self.expected))


def _read_load(stdout: str, options: Options, report: Report, out: IO[str]) -> None:
    kinds = {
        "welcome emails": Kind("welcome emails", options.users + (1 if options.images else 0)),
        "conversions": Kind("conversions", options.images),
    }
    for line in stdout.splitlines():
        if matched := SUMMARY.match(line):
            kind = kinds[matched["name"]]
            kind.started = int(matched["started"]) - int(matched["refused"] or 0)
            kind.completed, kind.failed = int(matched["completed"]), int(matched["failed"])
            kind.missing, kind.refused = int(matched["missing"]), int(matched["refused"] or 0)
    report.kinds = kinds
    for kind in kinds.values():
        report.say(kind.line(), out)
        if not kind.perfect:
            report.problems.append(kind.line())
    # The load's own lines about failures and refusals (its first few of each), grouped.
    details = Counter(
        line.strip() for line in stdout.splitlines() if line.startswith(("  failed", "  refused"))
    )
    for line, count in details.most_common(10):
        report.say(f"  load: {count} x {line}" if count > 1 else f"  load: {line}", out)


def _account(system: System, options: Options, report: Report, out: IO[str]) -> None:
    """Emails, notifications and jobs, through the services' own RPCs."""
    with SyncPeers(system.settings, identity=OPERATOR) as peers:  # admin reads
        jobs = peers.client(JobServiceClient)
        _settle(system, jobs, options.settle_seconds)
        emails = _all_emails(peers.client(EmailServiceClient))
        notifications = _all_notifications(peers.client(ClientServiceClient))
        stats = jobs.get_queue_stats(job_pb2.GetQueueStatsRequest()).queues
        unfinished = {
            queue.queue: {s: getattr(queue, s) for s in UNFINISHED if getattr(queue, s)}
            for queue in stats
        }
        stuck = [
            f"{job.id} {job_pb2.JobState.Name(job.state).removeprefix('JOB_STATE_').lower()}"
            for state in (
                job_pb2.JOB_STATE_AVAILABLE,
                job_pb2.JOB_STATE_SCHEDULED,
                job_pb2.JOB_STATE_EXECUTING,
                job_pb2.JOB_STATE_RETRYABLE,
            )
            for job in jobs.list_jobs(job_pb2.ListJobsRequest(state=state, page_size=5)).jobs
        ]
    per_key = Counter(email.idempotency_key for email in emails)
    per_user = Counter((email.user_id, email.template) for email in emails)
    key_duplicates = sum(n - 1 for n in per_key.values() if n > 1)
    user_duplicates = sum(n - 1 for (_, t), n in per_user.items() if n > 1 and t == WELCOME)
    report.duplicate_emails = key_duplicates + user_duplicates
    report.say(
        f"duplicate emails: {report.duplicate_emails} ({len(emails)} emails; {key_duplicates} "
        f"more than one per idempotency key, {user_duplicates} more than one welcome per user)",
        out,
    )
    per_workflow = Counter((n.kind, n.subject_id) for n in notifications)
    report.duplicate_notifications = sum(n - 1 for n in per_workflow.values() if n > 1)
    report.say(
        f"duplicate notifications: {report.duplicate_notifications} ({len(notifications)} "
        "notifications)",
        out,
    )
    keys = set(per_key)
    without_email = [
        n.subject_id for n in notifications if _succeeded(n) and _email_key(n) not in keys
    ]
    report.emails_missing = len(without_email)
    report.say(
        f"completed workflows without their email in the mailbox: {len(without_email)}"
        + (f" (e.g. {', '.join(without_email[:3])})" if without_email else ""),
        out,
    )
    completed = sum(kind.completed for kind in report.kinds.values())
    report.unknown_emails = max(0, len(per_key) - completed)
    report.say(
        f"emails of workflows the client does not know as completed: {report.unknown_emails} "
        f"({len(per_key)} emails for {completed} completed workflows)",
        out,
    )
    report.unfinished_jobs = sum(sum(states.values()) for states in unfinished.values())
    by_queue = "; ".join(
        f"{queue}: {', '.join(f'{n} {s}' for s, n in states.items()) or 'none'}"
        for queue, states in sorted(unfinished.items())
    )
    report.say(f"jobs not in a final state: {report.unfinished_jobs} ({by_queue})", out)
    for job in stuck[:5]:
        report.say(f"  job {job}", out)
    for count, what in (
        (report.duplicate_emails, "duplicate emails"),
        (report.duplicate_notifications, "duplicate notifications"),
        (report.emails_missing, "completed workflows without their email"),
        (report.unknown_emails, "emails of workflows the client does not know as completed"),
        (report.unfinished_jobs, "jobs not in a final state"),
    ):
        if count:
            report.problems.append(f"{count} {what}")


def _settle(system: System, jobs: JobServiceClient, seconds: float) -> None:
    """Waits until no job is waiting, running or due for a retry, for up to `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        system.check_alive()
        try:
            stats = jobs.get_queue_stats(job_pb2.GetQueueStatsRequest()).queues
        except (TwirpError, httpx.HTTPError):
            stats = None
        if stats is not None and not any(getattr(q, s) for q in stats for s in UNFINISHED):
            return
        time.sleep(1)


def _succeeded(notification: client_pb2.Notification) -> bool:
    if notification.HasField("email_delivered"):
        return notification.email_delivered.outcome == common_pb2.OUTCOME_SUCCEEDED
    return notification.conversion_finished.outcome == common_pb2.OUTCOME_SUCCEEDED


def _email_key(notification: client_pb2.Notification) -> str:
    """The idempotency key of the email a succeeded workflow sent (see user_svc and the
    conversion job)."""
    if notification.HasField("email_delivered"):
        return f"welcome:{notification.subject_id}"
    return f"conversion:{notification.subject_id}"


def _all_emails(emails: EmailServiceClient) -> list[email_pb2.Email]:
    found: list[email_pb2.Email] = []
    token = ""
    while True:
        page = emails.list_emails(email_pb2.ListEmailsRequest(page_size=1000, page_token=token))
        found += page.emails
        token = page.next_page_token
        if not token:
            return found


def _all_notifications(client: ClientServiceClient) -> list[client_pb2.Notification]:
    found: list[client_pb2.Notification] = []
    cursor = 0
    while True:
        page = client.list_notifications(
            client_pb2.ListNotificationsRequest(since_sequence=cursor, page_size=1000)
        )
        if not page.notifications:
            return found
        found += page.notifications
        cursor = page.notifications[-1].sequence


def _check_databases(data_dir: Path, report: Report, out: IO[str]) -> None:
    """PRAGMA integrity_check of every SQLite database under the data directory."""
    results = []
    for path in sorted(_sqlite_files(data_dir)):
        try:
            with _connect(path) as database:
                rows = database.execute("PRAGMA integrity_check").fetchall()
            verdict = "ok" if rows == [("ok",)] else "; ".join(str(row[0]) for row in rows[:3])
        except sqlite3.Error as exc:
            verdict = f"{type(exc).__name__}: {exc}"
        if verdict != "ok":
            report.corrupt_databases += 1
            report.problems.append(f"{path.name}: {verdict}")
        results.append(f"{path.relative_to(data_dir)} {verdict}")
    found = ", ".join(results) or "no SQLite databases"
    report.say(f"sqlite integrity_check: {found}", out)


def _check_restarts(log: Path, report: Report, out: IO[str]) -> None:
    """The supervisor's restarts, from its lines in the log: exactly one per SIGKILL."""
    restarts = Counter(re.findall(r"^supervisor +\| (\S+) restarted \(pid", log.read_text(), re.M))
    killed = Counter(fault.target for fault in SCHEDULE if fault.signal == signal.SIGKILL)
    listed = ", ".join(f"{name} {n}" for name, n in sorted(restarts.items())) or "none"
    report.say(f"supervisor restarts: {listed}", out)
    if restarts != killed:
        report.problems.append(f"restarts were {listed}, not one per SIGKILL")


def _sqlite_files(data_dir: Path) -> Iterator[Path]:
    for path in data_dir.rglob("*"):
        if path.is_file() and not path.name.endswith(("-wal", "-shm", "-journal")):
            with path.open("rb") as file:
                if file.read(16) == b"SQLite format 3\x00":
                    yield path


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(path, timeout=30)
    try:
        yield connection
    finally:
        connection.close()


def _verdict(report: Report) -> str:
    if report.perfect:
        return "chaos: PERFECT"
    return "chaos: NOT PERFECT: " + "; ".join(report.problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="chaos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=3000, help="welcome workflows (3000)")
    parser.add_argument("--images", type=int, default=20, help="conversions (20)")
    parser.add_argument("--concurrency", type=int, default=10, help="requests in flight (10)")
    parser.add_argument("--workers", type=int, default=2, help="job worker processes (2)")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="embedded",
        help="embedded (default), or PostgreSQL + RabbitMQ or Redis + S3 (moto)",
    )
    parser.add_argument(
        "--stop-seconds",
        type=float,
        default=30.0,
        help="how long email_svc is stopped (SIGSTOP) (30)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="how long the load waits for the workflows to finish (600)",
    )
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=60.0,
        help="how long to wait afterwards for jobs to reach a final state (60)",
    )
    parser.add_argument("--data-dir", type=Path, help="keep the data and logs here")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for every process (see .env.example); repeatable",
    )
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    options = Options(
        users=args.users,
        images=args.images,
        concurrency=args.concurrency,
        workers=args.workers,
        backend=args.backend,
        stop_seconds=args.stop_seconds,
        timeout=args.timeout,
        settle_seconds=args.settle_seconds,
        data_dir=args.data_dir,
        settings=settings,
    )
    return 0 if run(options).perfect else 1


if __name__ == "__main__":
    sys.exit(main())
