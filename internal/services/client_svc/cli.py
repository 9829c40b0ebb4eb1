"""client_svc's command line: drives both workflows through user_svc and waits for their
final callbacks, polling client_svc's ListNotifications.

  demo                         a few users, one PNG and one JPEG, shown as they complete
  load --users N --images M    N welcome-email workflows and M conversions at --concurrency,
                               with a progress line; prints completed / failed / missing,
                               end-to-end latency p50/p95/p99/max and throughput per workflow
  load --rate R --users N      open loop: N welcome-email workflows started at R per second
                               on a fixed schedule, however many are still in flight; each
                               latency counts from the workflow's scheduled start, so a
                               system that falls behind shows it (no coordinated omission)
  --json                       also a last line with the figures as JSON (for tests/bench)

Like a real client, it retries a start refused as unavailable or deadline_exceeded (a
connection error is unavailable), with exponential backoff for up to START_RETRY_SECONDS, with
the same idempotency key: the email for CreateUser, idempotency_key for ConvertImage. So a
retry whose first attempt got through, its answer lost, returns the same workflow.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import client_pb2, common_pb2, user_pb2
from mcsv.v1.client_twirp import AsyncClientServiceClient
from mcsv.v1.user_twirp import AsyncUserServiceClient

from internal import config, observability
from internal.auth import OPERATOR
from internal.peers import AsyncPeers

EMAIL = client_pb2.NOTIFICATION_KIND_EMAIL_DELIVERED
CONVERSION = client_pb2.NOTIFICATION_KIND_CONVERSION_FINISHED
# Errors a poll rides out (client_svc restarting or busy): the next poll asks again. A
# workflow's start is retried on them.
TRANSIENT = {ErrorCode.UNAVAILABLE, ErrorCode.DEADLINE_EXCEEDED}
START_RETRY_SECONDS = 60.0  # how long a workflow's start is retried
START_BACKOFF = (0.1, 5.0)  # its first and longest wait between attempts

R = TypeVar("R")


@dataclass
class Workflow:
    """One kind of workflow in a run: when each was started, and what came back."""

    name: str
    kind: client_pb2.NotificationKind  # EMAIL or CONVERSION
    started: dict[str, float] = field(default_factory=dict)  # subject id -> start time
    refused: list[str] = field(default_factory=list)  # errors starting a workflow
    finished: dict[str, client_pb2.Notification] = field(default_factory=dict)

    def outcome(self, subject_id: str) -> int:
        notification = self.finished[subject_id]
        event = (
            notification.email_delivered if self.kind == EMAIL else notification.conversion_finished
        )
        return event.outcome

    def figures(self) -> dict[str, Any]:
        """The run's counts and, when some finished, latencies (ms) and throughput (/s)."""
        completed = [s for s in self.finished if self.outcome(s) == common_pb2.OUTCOME_SUCCEEDED]
        figures: dict[str, Any] = {
            "started": len(self.started) + len(self.refused),
            "completed": len(completed),
            "failed": len(self.finished) - len(completed),
            "missing": len(self.started) - len(self.finished),
            "refused": len(self.refused),
        }
        latencies = sorted(received_at(self.finished[s]) - self.started[s] for s in self.finished)
        if latencies:
            first = min(self.started.values())
            last = max(received_at(n) for n in self.finished.values())
            for q in (50, 95, 99):
                figures[f"p{q}_ms"] = percentile(latencies, q) * 1000
            figures["max_ms"] = latencies[-1] * 1000
            figures["throughput"] = len(latencies) / max(last - first, 1e-6)
        return figures

    def summary(self) -> list[str]:
        figures = self.figures()
        failed = [s for s in self.finished if self.outcome(s) != common_pb2.OUTCOME_SUCCEEDED]
        lines = [
            f"{self.name}: {figures['started']} started, {figures['completed']} completed, "
            f"{figures['failed']} failed, {figures['missing']} missing"
            + (f", {figures['refused']} refused at start" if self.refused else "")
        ]
        if "throughput" in figures:
            lines.append(
                f"  end-to-end latency p50 {figures['p50_ms']:.0f} ms, "
                f"p95 {figures['p95_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms, "
                f"max {figures['max_ms']:.0f} ms; throughput {figures['throughput']:.1f}/s"
            )
        for subject in failed[:5]:
            lines.append(f"  failed {subject}: {self.error(subject)}")
        for error in self.refused[:5]:
            lines.append(f"  refused: {error}")
        return lines

    def error(self, subject_id: str) -> str:
        notification = self.finished[subject_id]
        event = (
            notification.email_delivered if self.kind == EMAIL else notification.conversion_finished
        )
        return event.error


def received_at(notification: client_pb2.Notification) -> float:
    """When client_svc received it, in unix seconds."""
    return notification.received_at.ToNanoseconds() / 1e9


def percentile(ordered: list[float], q: float) -> float:
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q) - 1]


def sample_image(index: int, fmt: str) -> bytes:
    """A small, distinct image to convert."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (640 + index % 7 * 32, 480), (40 + index * 37 % 200, 90, 160))
    ImageDraw.Draw(image).text((20, 20), f"mcsv {fmt} #{index}", fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="PNG" if fmt == "png" else "JPEG", quality=90)
    return out.getvalue()


class Driver:
    def __init__(self, settings: config.Settings, concurrency: int) -> None:
        self.settings = settings
        # The CLI is the operator's tool: it reads client_svc's notifications with
        # OPERATOR_TOKEN, and uploads with each user's own API token (from CreateUser).
        self.peers = AsyncPeers(settings, identity=OPERATOR)
        # 30 s, not the whole START_RETRY_SECONDS: a hung attempt leaves time for another.
        self.users = self.peers.client(AsyncUserServiceClient, timeout=30)
        self.notifications = self.peers.client(AsyncClientServiceClient, timeout=60)
        self.limit = asyncio.Semaphore(concurrency)
        self.emails = Workflow("welcome emails", EMAIL)
        self.conversions = Workflow("conversions", CONVERSION)
        self.cursor = 0  # the last notification sequence read
        self.api_tokens: dict[str, str] = {}  # user id: the user's API token

    async def start_from_now(self) -> None:
        """Skips the notifications of earlier runs: reading starts after the newest one."""
        latest = await self.notifications.list_notifications(
            client_pb2.ListNotificationsRequest(page_size=1)
        )
        self.cursor = latest.latest_sequence

    async def read_new(self) -> list[client_pb2.Notification]:
        """The notifications received since the last call, every page of them."""
        found: list[client_pb2.Notification] = []
        token = ""
        while True:
            page = await self.notifications.list_notifications(
                client_pb2.ListNotificationsRequest(
                    since_sequence=self.cursor, page_size=1000, page_token=token
                )
            )
            found += page.notifications
            token = page.next_page_token
            if not token:
                break
        if found:
            self.cursor = found[-1].sequence
        return found

    async def close(self) -> None:
        await self.peers.aclose()

    async def create_user(self, index: int) -> str | None:
        """A welcome workflow started once one of the --concurrency slots is free (closed
        loop); its latency counts from then."""
        async with self.limit:
            return await self.create_user_now(index, time.time())

    async def create_user_now(self, index: int, started: float) -> str | None:
        """A welcome workflow started now, its latency counted from `started`."""
        name, email = f"User {index}", f"user{index}.{time.time_ns()}@example.com"
        try:
            # The root of the workflow's trace: every service's spans hang below it.
            with observability.tracer().start_as_current_span("workflow welcome email"):
                request = user_pb2.CreateUserRequest(name=name, email=email)
                created = await retried(lambda: self.users.create_user(request))
        except TwirpError as exc:
            self.emails.refused.append(f"CreateUser: {exc}")
            return None
        self.emails.started[created.user.id] = started
        self.api_tokens[created.user.id] = created.api_token
        return created.user.id

    async def open_loop(self, count: int, rate: float) -> float:
        """Starts `count` welcome workflows at `rate` per second on a fixed schedule, each at
        its time whether or not earlier ones have answered; returns the largest lag of a
        start behind its schedule (seconds: the client itself falling behind)."""
        loop = asyncio.get_running_loop()
        first_wall, first_loop = time.time(), loop.time()
        tasks: list[asyncio.Task[str | None]] = []
        lag = 0.0
        for index in range(count):
            offset = index / rate
            delay = first_loop + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            lag = max(lag, -delay)
            start = self.create_user_now(index + 1, first_wall + offset)
            tasks.append(asyncio.create_task(start))
        await asyncio.gather(*tasks)
        return lag

    async def convert(self, user_id: str, index: int) -> None:
        fmt = "png" if index % 2 == 0 else "jpeg"
        image = sample_image(index, fmt)
        key = uuid.uuid4().hex  # one per workflow, the same for each retry of its start
        async with self.limit:
            started = time.time()
            try:
                with observability.tracer().start_as_current_span("workflow conversion"):
                    accepted = await retried(lambda: self._upload(user_id, index, fmt, image, key))
            except TwirpError as exc:
                self.conversions.refused.append(f"ConvertImage: {exc}")
                return
        self.conversions.started[accepted.conversion.id] = started

    async def _upload(
        self, user_id: str, index: int, fmt: str, image: bytes, key: str
    ) -> user_pb2.ConvertImageResponse:
        return await self.users.convert_image(
            user_pb2.ConvertImageRequest(
                user_id=user_id,
                filename=f"image-{index}.{fmt}",
                image_data=image,
                options=common_pb2.ConversionOptions(
                    quality=common_pb2.PDF_QUALITY_MEDIUM, strip_metadata=True
                ),
                idempotency_key=key,
            ),
            headers={"Authorization": f"Bearer {self.api_tokens[user_id]}"},  # as that user
        )

    async def wait(self, timeout: float, progress: Callable[[], None]) -> None:
        """Polls client_svc's notifications until every started workflow is accounted for."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                new = await self.read_new()
            except TwirpError as exc:
                if exc.code not in TRANSIENT:
                    raise
                new = []
            for received in new:
                workflow = self.emails if received.kind == EMAIL else self.conversions
                if received.subject_id in workflow.started:
                    workflow.finished.setdefault(received.subject_id, received)
            progress()
            if all(len(w.finished) == len(w.started) for w in (self.emails, self.conversions)):
                return
            await asyncio.sleep(0.25)

    def progress_line(self) -> str:
        parts = [
            f"{w.name}: {len(w.finished)}/{len(w.started)} done"
            for w in (self.emails, self.conversions)
            if w.started or w.refused
        ]
        return " | ".join(parts)


async def retried(start: Callable[[], Awaitable[R]]) -> R:
    """A workflow's start, tried again with exponential backoff (and jitter) while it fails
    with a TRANSIENT error, for up to START_RETRY_SECONDS; then its last error is raised."""
    deadline = time.monotonic() + START_RETRY_SECONDS
    delay, longest = START_BACKOFF
    while True:
        try:
            return await start()
        except TwirpError as exc:
            wait = delay * random.uniform(0.5, 1.0)
            if exc.code not in TRANSIENT or time.monotonic() + wait > deadline:
                raise
        await asyncio.sleep(wait)
        delay = min(delay * 2, longest)


async def gather_limited(tasks: list[Awaitable[object]], progress: Callable[[], None]) -> None:
    pending = [asyncio.ensure_future(task) for task in tasks]
    while pending:
        done, still = await asyncio.wait(pending, timeout=0.25)
        pending = list(still)
        for finished in done:
            finished.result()
        progress()


async def run_load(settings: config.Settings, args: argparse.Namespace) -> int:
    driver = Driver(settings, args.concurrency)
    await driver.start_from_now()
    show = _progress(driver, quiet=args.quiet)
    figures: dict[str, Any] = {}
    if args.rate:
        print(
            f"load: {args.users} users started at {args.rate:g}/s (open loop) "
            f"against {settings.url('user_svc')}",
            file=sys.stderr,
        )
        ticker = asyncio.create_task(_tick(show))
        began = time.monotonic()
        lag = await driver.open_loop(args.users, args.rate)
        sent_for = time.monotonic() - began
        ticker.cancel()
        # A lag, or starts taking longer than users/rate: the client could not keep up.
        figures.update(offered_rate=args.rate, start_lag_ms=lag * 1000, sent_in_s=sent_for)
    else:
        print(
            f"load: {args.users} users and {args.images} images at concurrency "
            f"{args.concurrency} against {settings.url('user_svc')}",
            file=sys.stderr,
        )
        owner = await driver.create_user(0) if args.images else None
        if args.images and owner is None:
            print("could not create the user who uploads the images", file=sys.stderr)
        tasks: list[Awaitable[object]] = [driver.create_user(i) for i in range(1, args.users + 1)]
        if owner is not None:
            tasks += [driver.convert(owner, i) for i in range(args.images)]
        await gather_limited(tasks, show)
    await driver.wait(args.timeout, show)
    if not args.quiet:
        print(file=sys.stderr)
    for workflow in (driver.emails, driver.conversions):
        if workflow.started or workflow.refused:
            print("\n".join(workflow.summary()))
    if args.rate:
        print(
            f"  offered {args.rate:g}/s; the client's starts lagged their schedule by at most "
            f"{figures['start_lag_ms']:.0f} ms"
        )
    if args.json:
        figures["emails"] = driver.emails.figures()
        if driver.conversions.started or driver.conversions.refused:
            figures["conversions"] = driver.conversions.figures()
        print(json.dumps(figures))
    await driver.close()
    incomplete = any(
        len(w.finished) < len(w.started) or w.refused for w in (driver.emails, driver.conversions)
    )
    return 1 if incomplete else 0


async def _tick(show: Callable[[], None]) -> None:
    while True:
        show()
        await asyncio.sleep(0.25)


async def run_demo(settings: config.Settings, args: argparse.Namespace) -> int:
    driver = Driver(settings, concurrency=4)
    await driver.start_from_now()
    user_ids = [await driver.create_user(i) for i in range(1, 4)]
    owner = next((u for u in user_ids if u), None)
    if owner is not None:
        for index in (0, 1):  # one PNG, one JPEG
            await driver.convert(owner, index)
    await driver.wait(args.timeout, lambda: None)
    for subject, received in driver.emails.finished.items():
        delivery = received.email_delivered
        print(f"welcome email for {subject}: {common_pb2.Outcome.Name(delivery.outcome)} "
              f"-> {settings.url('email_svc')}/mailbox/{delivery.email_id}")  # fmt: skip
    for subject, received in driver.conversions.finished.items():
        report = received.conversion_finished
        result = report.result
        print(
            f"conversion {subject}: {common_pb2.Outcome.Name(report.outcome)} "
            f"{result.pdf_bytes} bytes, {result.page_width_points:.0f}x"
            f"{result.page_height_points:.0f} pt -> {report.pdf_url or report.error}"
        )
    for workflow in (driver.emails, driver.conversions):
        print("\n".join(workflow.summary()))
    await driver.close()
    complete = all(len(w.finished) == len(w.started) for w in (driver.emails, driver.conversions))
    return 0 if complete and not driver.emails.refused else 1


def _progress(driver: Driver, *, quiet: bool) -> Callable[[], None]:
    def show() -> None:
        if not quiet:
            print(f"\r{driver.progress_line():<100}", end="", file=sys.stderr, flush=True)

    return show


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="client_svc", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="a few users, a PNG and a JPEG")
    demo.add_argument("--timeout", type=float, default=120, help="seconds to wait (default 120)")
    load = commands.add_parser("load", help="many workflows, with figures")
    load.add_argument("--users", type=int, default=100, help="welcome-email workflows")
    load.add_argument("--images", type=int, default=0, help="conversions")
    load.add_argument("--concurrency", type=int, default=10, help="requests in flight")
    load.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="open loop: start --users workflows at this many per second (not with --images)",
    )
    load.add_argument("--json", action="store_true", help="a last line of figures as JSON")
    load.add_argument("--timeout", type=float, default=600, help="seconds to wait for callbacks")
    load.add_argument("--quiet", action="store_true", help="no progress line")
    args = parser.parse_args(argv)
    if args.command == "load" and args.rate and args.images:
        parser.error("--rate drives welcome workflows only; leave out --images")
    if args.command == "load" and args.rate < 0:
        parser.error("--rate must be positive")
    settings = config.load()
    observability.configure_tracing("client_svc")
    run = run_demo if args.command == "demo" else run_load
    return asyncio.run(run(settings, args))
