"""P2: converting a 1920x1080 PNG through the whole system (embedded defaults, as `just up`
runs them: two job workers of four threads) against the bare `convert` command image_svc
runs, with the same arguments, on the same image.

- one conversion end to end: ConvertImage until GetConversion reports success, median over
  several, against one bare convert (median);
- 40 conversions at concurrency 10 (a slot starts its next conversion once GetConversion
  reports its last one succeeded), against 40 bare converts two at a time, both as
  conversions per second; the mean of three such rounds (bare, then system). A round is the
  whole 40: the system's first conversions start converting only once uploaded, enqueued
  and fetched, and its last leave a core idle while their PDF, email and report are done,
  edges that weigh twice as much in a round of 20 (0.82x against 0.89x on average, four
  pairs of rounds of each size alternated, stop 25);

The uploader learns that a conversion finished as a client of the system does: from
client_svc's notification (one long-polled ListNotifications for all conversions, which
answers as soon as user_svc has recorded the outcome and notified it), and then asks
GetConversion once, which must say succeeded. Polling GetConversion every few milliseconds
instead would measure the poll: on two cores its CPU (the bench's and user_svc's) is taken
from the convert it waits for.
- enqueue -> worker start on the SQLite broker: the job's inserted_at to its attempted_at
  (job_svc's own clock for both), median over the single conversions (idle workers).

Each system measurement follows one of its bare peer, so that both see the same load of
the (shared) machine."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mcsv.v1 import client_pb2, common_pb2, job_pb2, user_pb2
from mcsv.v1.client_twirp import AsyncClientServiceClient
from mcsv.v1.job_twirp import AsyncJobServiceClient
from mcsv.v1.user_twirp import AsyncUserServiceClient

from internal import config, imaging
from internal.auth import OPERATOR
from internal.peers import AsyncPeers
from internal.supervisor import System
from tests.bench.table import Row
from tests.e2e.images import make_image
from tests.e2e.system import whole_system

WAIT_MS = 10_000  # how long one ListNotifications call may wait for a notification
MANY = 40  # conversions at CONCURRENCY in a round
ROUNDS = 3
CONCURRENCY = 10
OPTIONS = common_pb2.ConversionOptions(quality=common_pb2.PDF_QUALITY_MEDIUM, strip_metadata=True)


def the_image() -> bytes:
    return make_image("png", 1920, 1080)


def bare_argv(image: bytes, temp_dir: str) -> list[str]:
    """The argv image_svc runs for this image (its default settings)."""
    magick = imaging.ImageMagick(timeout=config.load({}).imagemagick_timeout_seconds)
    return magick.command(imaging.inspect_image(image), OPTIONS, temp_dir=temp_dir)


def bare_single(image: bytes, runs: int) -> float:
    """The median seconds of one bare convert."""
    times = []
    with tempfile.TemporaryDirectory(prefix="mcsv-bench-magick-") as tmp:
        argv = bare_argv(image, tmp)
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(argv, input=image, capture_output=True, check=True)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def bare_parallel(image: bytes, conversions: int) -> float:
    """Conversions per second of two bare converts running side by side, back to back."""
    left = list(range(conversions))
    lock = threading.Lock()

    def convert_some(argv: list[str]) -> None:
        while True:
            with lock:
                if not left:
                    return
                left.pop()
            subprocess.run(argv, input=image, capture_output=True, check=True)

    with tempfile.TemporaryDirectory(prefix="mcsv-bench-magick-") as tmp:
        argv = bare_argv(image, tmp)
        threads = [threading.Thread(target=convert_some, args=(argv,)) for _ in range(2)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return conversions / (time.perf_counter() - started)


class Uploader:
    """A user of the running system converting images with the generated async clients."""

    def __init__(self, settings: config.Settings) -> None:
        self.peers = AsyncPeers(settings, identity=OPERATOR)
        self.users = self.peers.client(AsyncUserServiceClient, timeout=60)
        self.jobs = self.peers.client(AsyncJobServiceClient)
        self.notifications = self.peers.client(
            AsyncClientServiceClient, timeout=WAIT_MS / 1000 + 30
        )
        self.user_id = ""
        self.headers: dict[str, str] = {}
        self.finished: dict[str, asyncio.Future[None]] = {}  # by conversion id
        self.watcher: asyncio.Task[None] | None = None

    async def watch(self) -> None:
        """Resolves the future of each conversion whose finish client_svc was notified of."""
        kind = client_pb2.NOTIFICATION_KIND_CONVERSION_FINISHED
        cursor = (await self.notifications.list_notifications(
            client_pb2.ListNotificationsRequest(kind=kind, page_size=1)
        )).latest_sequence  # fmt: skip
        while True:
            page = await self.notifications.list_notifications(
                client_pb2.ListNotificationsRequest(
                    since_sequence=cursor, kind=kind, page_size=1000, wait_ms=WAIT_MS
                )
            )
            for notification in page.notifications:
                cursor = notification.sequence
                conversion_id = notification.conversion_finished.conversion_id
                self.finished.setdefault(conversion_id, asyncio.Future()).set_result(None)

    async def sign_up(self) -> None:
        created = await self.users.create_user(
            user_pb2.CreateUserRequest(name="Bench", email=f"bench{time.time_ns()}@example.com")
        )
        self.user_id = created.user.id
        self.headers = {"Authorization": f"Bearer {created.api_token}"}
        self.watcher = asyncio.create_task(self.watch())

    async def convert(self, image: bytes, index: int) -> tuple[float, str]:
        """Seconds from ConvertImage to GetConversion's success, and the job's id."""
        started = time.perf_counter()
        accepted = await self.users.convert_image(
            user_pb2.ConvertImageRequest(
                user_id=self.user_id, filename=f"bench-{index}.png", image_data=image,
                options=OPTIONS,
            ),
            headers=self.headers,
        )  # fmt: skip
        conversion_id = accepted.conversion.id
        finished = self.finished.setdefault(conversion_id, asyncio.Future())
        watcher = self.watcher
        assert watcher is not None, "sign_up starts the watcher"
        await asyncio.wait([finished, watcher], return_when=asyncio.FIRST_COMPLETED)
        if not finished.done():  # the watcher failed: its error is the answer
            watcher.result()
        answer = await self.users.get_conversion(
            user_pb2.GetConversionRequest(id=conversion_id), headers=self.headers
        )
        seconds = time.perf_counter() - started
        del self.finished[conversion_id]
        if answer.conversion.state != user_pb2.CONVERSION_STATE_SUCCEEDED:
            raise RuntimeError(f"conversion {conversion_id} ended: {answer}")
        return seconds, answer.conversion.job_id

    async def enqueue_to_start(self, job_id: str) -> float:
        """Seconds from the job's insertion to its (last) attempt's start."""
        job = (await self.jobs.get_job(job_pb2.GetJobRequest(id=job_id))).job
        return (job.attempted_at.ToNanoseconds() - job.inserted_at.ToNanoseconds()) / 1e9


def conversion_load(
    system: System, conversions: int, concurrency: int, started: Callable[[], None] = lambda: None
) -> float:
    """Conversions per second of `conversions` run `concurrency` at a time by one user, after
    three to warm every process's path; `started` is called once warm, just before the load."""

    async def convert() -> float:
        image, uploader = the_image(), Uploader(system.settings)
        try:
            await uploader.sign_up()
            for index in range(3):
                await uploader.convert(image, -index)
            limit = asyncio.Semaphore(concurrency)

            async def one(index: int) -> None:
                async with limit:
                    await uploader.convert(image, index)

            started()
            began = time.perf_counter()
            await asyncio.gather(*(one(index) for index in range(conversions)))
            return conversions / (time.perf_counter() - began)
        finally:
            if uploader.watcher is not None:
                uploader.watcher.cancel()
            await uploader.peers.aclose()

    return asyncio.run(convert())


async def _in_system(system: System, image: bytes, singles: int, per_round: int, rounds: int
                     ) -> dict[str, list[float]]:  # fmt: skip
    """The figures, each measurement of the system next to one of its bare peer (the machine
    is shared: its load changes from second to second, and a ratio of neighbours is fairer)."""
    uploader = Uploader(system.settings)
    figures: dict[str, list[float]] = {"single": [], "bare": [], "wait": [],
                                       "rate": [], "bare_rate": []}  # fmt: skip
    try:
        await uploader.sign_up()
        for index in range(3):  # warm up every process's path
            await uploader.convert(image, -index)
        job_ids = []
        for index in range(singles):
            await asyncio.sleep(0.2)  # the workers idle again
            figures["bare"].append(await asyncio.to_thread(bare_single, image, 1))
            seconds, job_id = await uploader.convert(image, index)
            figures["single"].append(seconds)
            job_ids.append(job_id)
        figures["wait"] = [await uploader.enqueue_to_start(job_id) for job_id in job_ids]

        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(index: int) -> None:
            async with limit:
                await uploader.convert(image, 1000 + index)

        for round_ in range(rounds):
            figures["bare_rate"].append(await asyncio.to_thread(bare_parallel, image, per_round))
            started = time.perf_counter()
            await asyncio.gather(*(one(round_ * per_round + i) for i in range(per_round)))
            figures["rate"].append(per_round / (time.perf_counter() - started))
        return figures
    finally:
        if uploader.watcher is not None:
            uploader.watcher.cancel()
        await uploader.peers.aclose()


def measure(quick: bool) -> list[Row]:
    image = the_image()
    singles, many, rounds = (3, 10, 1) if quick else (15, MANY, ROUNDS)
    with (
        tempfile.TemporaryDirectory(prefix="mcsv-bench-conversion-") as tmp,
        whole_system(Path(tmp)) as system,
    ):
        figures = asyncio.run(_in_system(system, image, singles, many, rounds))
    rounds_said = "1 round" if rounds == 1 else f"mean of {rounds} rounds"
    single, bare = statistics.median(figures["single"]), statistics.median(figures["bare"])
    rate, bare_rate = statistics.fmean(figures["rate"]), statistics.fmean(figures["bare_rate"])
    wait_ms = statistics.median(figures["wait"]) * 1000
    return [
        Row(
            goal="P2",
            figure=f"one 1920x1080 PNG end to end (median of {singles})",
            value=single * 1000, unit="ms", target="<= 1.25x bare convert",
            met=single <= 1.25 * bare, peer="bare convert (same argv)",
            peer_value=bare * 1000, ratio=single / bare,
        ),
        Row(
            goal="P2",
            figure=f"{many} conversions at concurrency 10 ({rounds_said})",
            value=rate, unit="conv/s", target=">= 0.8x two bare converts in parallel",
            met=rate >= 0.8 * bare_rate, peer="2 bare converts in parallel",
            peer_value=bare_rate, ratio=rate / bare_rate,
        ),
        Row(
            goal="P2",
            figure="enqueue -> worker start p50 (SQLite broker, in the system)",
            value=wait_ms, unit="ms", target="<= 5 ms", met=wait_ms <= 5,
        ),
    ]  # fmt: skip
