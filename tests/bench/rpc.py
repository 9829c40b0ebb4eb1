"""P3: the generated Twirp clients against our served stack, side by side with grpcio on the
same message and cores (`python -m tests.bench --only P3`).

Both servers run in their own process and answer JobService.GetJob with the same fixed
GetJobResponse (a realistic job with its history):
- ours is served exactly as a service is: service_app (observability on: JSON logs, spans,
  metrics; AuthHooks verifying the caller's service token) run by internal.services.runner
  `serve_app`, with the garbage collector and malloc set up as in every service process;
- the peer is a grpc.aio server with stubs that grpcio-tools generates from
  proto/mcsv/v1/job.proto into a temporary directory at bench time.

The clients run in a third process: sequential calls with the sync clients (our generated
JobServiceClient, grpcio's sync stub), then 10 concurrent callers on asyncio (our generated
AsyncJobServiceClient, grpc.aio). Our client sends a real service token (minted and cached as
the services do, internal.auth.credentials).

    python -m tests.bench.rpc serve ours|grpc PORT STUBS_DIR     (a server process)
    python -m tests.bench.rpc call CASE URL SECONDS STUBS_DIR     (a client process)
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from mcsv.v1 import common_pb2, job_pb2

from tests.bench.table import Row
from tests.support.servers import ROOT, free_port, stop_process

GOAL = "P3"
CONCURRENCY = 10
CALLER = "bench_client"  # the service name the client's tokens carry
GET_JOB = "mcsv.v1.JobService/GetJob"
SECRETS = {
    "SERVICE_TOKEN_SECRET": "bench-service-token-secret-0123456789abcdef",
    "USER_TOKEN_SECRET": "bench-user-token-secret-0123456789abcdef",
    "OPERATOR_TOKEN": "bench-operator-token",
    "STORAGE_SECRET": "bench-storage-secret",
}
# (figure, our client case, grpcio's client case)
CASES = [
    ("GetJob calls/s, sync sequential", "ours-sync", "grpc-sync"),
    (f"GetJob calls/s, async c={CONCURRENCY}", "ours-async", "grpc-async"),
]


def fixed_response() -> job_pb2.GetJobResponse:
    """A completed email job that failed twice before it was delivered, with its history."""

    def at(seconds: int) -> Timestamp:
        return Timestamp(seconds=1_790_000_000 + seconds, nanos=123_000_000)

    job_id = "0197a3c2-5e1f-7b42-9d0e-4c8a1f2b3d4e"
    worker = "worker-host-1:48213"
    job = job_pb2.Job(
        id=job_id,
        queue="emails",
        actor="deliver_email",
        state=job_pb2.JOB_STATE_COMPLETED,
        attempt=3,
        errors=[
            job_pb2.JobAttemptError(attempt=n, message=message, failed_at=at(n * 7))
            for n, message in [
                (1, "SMTPServerDisconnected: Connection unexpectedly closed"),
                (2, "TimeoutError: timed out connecting to smtp.example.org:587"),
            ]
        ],
        inserted_at=at(0),
        scheduled_at=at(15),
        attempted_at=at(15),
        finished_at=at(16),
        worker=worker,
        email=job_pb2.EmailJobArgs(
            idempotency_key="welcome:0197a3c2-1111-7b42-9d0e-4c8a1f2b3d4e",
            user_id="0197a3c2-1111-7b42-9d0e-4c8a1f2b3d4e",
            user_name="Ada Lovelace",
            recipient="ada.lovelace@example.org",
            template=common_pb2.EMAIL_TEMPLATE_WELCOME,
            variables={"product": "mcsv", "locale": "en-GB"},
        ),
        retry_until=at(86_400),
    )
    kinds = [
        (job_pb2.JOB_EVENT_TYPE_ENQUEUED, 0, ""),
        (job_pb2.JOB_EVENT_TYPE_STARTED, 1, ""),
        (job_pb2.JOB_EVENT_TYPE_FAILED, 1, job.errors[0].message),
        (job_pb2.JOB_EVENT_TYPE_STARTED, 2, ""),
        (job_pb2.JOB_EVENT_TYPE_FAILED, 2, job.errors[1].message),
        (job_pb2.JOB_EVENT_TYPE_STARTED, 3, ""),
        (job_pb2.JOB_EVENT_TYPE_COMPLETED, 3, ""),
    ]
    events = [
        job_pb2.JobEvent(job_id=job_id, sequence=n, type=kind, occurred_at=at(n),
                         attempt=attempt, message=message, worker=worker if attempt else "")
        for n, (kind, attempt, message) in enumerate(kinds, start=1)
    ]  # fmt: skip
    return job_pb2.GetJobResponse(job=job, events=events)


REQUEST = job_pb2.GetJobRequest(id="0197a3c2-5e1f-7b42-9d0e-4c8a1f2b3d4e")


# --- the servers ------------------------------------------------------------------------


def serve_ours(port: int) -> None:
    from internal.services.common.memory import return_large_blocks
    from internal.services.runner import serve_app

    return_large_blocks()  # as internal.services.runner.serve does, before the app is built
    serve_app(ours_app(), "127.0.0.1", port)


def ours_app() -> Any:
    """job_svc's app stack (service_app) serving the fixed GetJob answer."""
    from mcsv.twirp import Context, ErrorCode, TwirpError
    from mcsv.v1.job_twirp_server import JobServiceServer

    from internal import config, observability
    from internal.auth import policy
    from internal.services.common.app import service_app

    # GetJob is the operator's; the bench's caller is a service, so that the server verifies
    # a real service token on every call.
    policy.ALLOWED = {**policy.ALLOWED, GET_JOB: policy.ALLOWED[GET_JOB] | {CALLER}}
    answer = fixed_response()

    class Jobs:
        async def get_job(self, ctx: Context, request: job_pb2.GetJobRequest) -> Any:
            if policy.caller(ctx) is None:
                raise RuntimeError("the bench's calls must be authenticated")
            return answer

        def __getattr__(self, rpc: str) -> Any:  # the other RPCs: not part of the bench
            async def unimplemented(ctx: Context, request: Any) -> Any:
                raise TwirpError(ErrorCode.UNIMPLEMENTED, rpc)

            return unimplemented

    observability.configure("job_svc")
    settings = config.load()
    server = JobServiceServer(service=Jobs())
    return service_app("job_svc", settings, [server])


def serve_grpc(port: int) -> None:
    import grpc
    import job_pb2_grpc  # type: ignore[import-not-found]  # generated at bench time

    answer = fixed_response()

    class Jobs(job_pb2_grpc.JobServiceServicer):  # type: ignore[misc]
        async def GetJob(self, request: job_pb2.GetJobRequest, context: Any) -> Any:
            return answer

    async def main() -> None:
        server = grpc.aio.server()
        job_pb2_grpc.add_JobServiceServicer_to_server(Jobs(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


# --- the clients ------------------------------------------------------------------------


def _sync_rate(call: Callable[[], object], seconds: float) -> float:
    for _ in range(50):  # warm up: connections, caches
        call()
    calls, started = 0, time.perf_counter()
    deadline = started + seconds
    while (now := time.perf_counter()) < deadline:
        for _ in range(20):
            call()
        calls += 20
    return calls / (now - started)


async def _async_rate(call: Callable[[], Any], seconds: float) -> float:
    await asyncio.gather(*(call() for _ in range(CONCURRENCY * 5)))  # warm up
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def caller() -> None:
        nonlocal calls
        while time.perf_counter() < deadline:
            await call()
            calls += 1

    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    return calls / (time.perf_counter() - started)


def call(case: str, url: str, seconds: float) -> float:
    """Calls per second for one client case against the server at `url`."""
    expected = fixed_response()
    if case.startswith("ours"):
        from mcsv.v1.job_twirp import AsyncJobServiceClient, JobServiceClient

        from internal import config
        from internal.auth.credentials import ServiceTokens

        service_tokens = ServiceTokens(config.load(), CALLER)

        def credentials() -> str:
            return service_tokens.token("job_svc")

        if case == "ours-sync":
            with JobServiceClient(url, credentials=credentials) as client:
                assert client.get_job(REQUEST) == expected
                return _sync_rate(lambda: client.get_job(REQUEST), seconds)

        async def ours_async() -> float:
            async with AsyncJobServiceClient(url, credentials=credentials) as client:
                assert await client.get_job(REQUEST) == expected
                return await _async_rate(lambda: client.get_job(REQUEST), seconds)

        return asyncio.run(ours_async())

    import grpc
    import job_pb2_grpc

    target = url.removeprefix("http://")
    if case == "grpc-sync":
        with grpc.insecure_channel(target) as channel:
            stub = job_pb2_grpc.JobServiceStub(channel)
            assert stub.GetJob(REQUEST) == expected
            return _sync_rate(lambda: stub.GetJob(REQUEST), seconds)

    async def grpc_async() -> float:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = job_pb2_grpc.JobServiceStub(channel)
            assert await stub.GetJob(REQUEST) == expected
            return await _async_rate(lambda: stub.GetJob(REQUEST), seconds)

    return asyncio.run(grpc_async())


# --- the benchmark ----------------------------------------------------------------------


def generate_grpc_stubs(into: Path) -> None:
    """job_pb2_grpc.py from proto/mcsv/v1/job.proto by grpcio-tools; it imports the messages
    from the generated contracts (mcsv.v1.job_pb2), so both sides share one message class."""
    from importlib import resources

    from grpc_tools import protoc  # type: ignore[import-untyped]

    well_known = resources.files("grpc_tools") / "_proto"  # google/protobuf/*.proto
    out = into / "protoc"  # not on the path: its mcsv/ would hide the contracts' package
    out.mkdir()
    status = protoc.main(
        ["grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"-I{well_known}", f"--grpc_python_out={out}",
         str(ROOT / "proto" / "mcsv" / "v1" / "job.proto")]
    )  # fmt: skip
    if status != 0:
        raise RuntimeError(f"grpcio-tools failed with {status}")
    generated = out / "mcsv" / "v1" / "job_pb2_grpc.py"
    (into / "job_pb2_grpc.py").write_text(generated.read_text())


def _env(stubs: Path) -> dict[str, str]:
    path = os.pathsep.join([str(stubs), str(ROOT)])
    return {**os.environ, **SECRETS, "PYTHONPATH": path, "MCSV_LOG_FORMAT": "json",
            "MCSV_DATA_DIR": str(stubs / "data")}  # fmt: skip


@contextmanager
def _server(kind: str, stubs: Path) -> Iterator[str]:
    port = free_port()
    errors = stubs / f"{kind}.stderr"
    with errors.open("wb") as stderr:  # its JSON logs on stdout are written, and dropped
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.rpc", "serve", kind, str(port), str(stubs)],
            cwd=ROOT, env=_env(stubs), stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    try:
        _wait_listening(port, process, errors)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process, timeout=15)


def _wait_listening(port: int, process: subprocess.Popen[bytes], errors: Path) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            problem = errors.read_text()
            raise RuntimeError(f"a bench server exited with {process.returncode}:\n{problem}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("the bench server did not listen within 30 s")


def _client(case: str, url: str, seconds: float, stubs: Path) -> float:
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.rpc", "call", case, url, str(seconds), str(stubs)],
        cwd=ROOT, env=_env(stubs), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"client {case} failed:\n{done.stderr}")
    rate: float = json.loads(done.stdout.strip().splitlines()[-1])["calls_per_second"]
    return rate


def measure(quick: bool) -> list[Row]:
    seconds, rounds = (1.5, 1) if quick else (6.0, 3)
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="mcsv-bench-rpc-") as tmp:
        stubs = Path(tmp)
        generate_grpc_stubs(stubs)
        with _server("ours", stubs) as ours_url, _server("grpc", stubs) as grpc_url:
            for _ in range(rounds):  # alternate, keep the best of each: the machine is shared
                for _figure, ours, theirs in CASES:
                    for case, url in ((ours, ours_url), (theirs, grpc_url)):
                        best[case] = max(best.get(case, 0.0), _client(case, url, seconds, stubs))
    rows = []
    for figure, ours, theirs in CASES:
        ratio = best[ours] / best[theirs]
        rows.append(
            Row(GOAL, figure, best[ours], "calls/s", ">= 1.0x grpcio", ratio >= 1.0,
                peer=theirs.replace("-", " "), peer_value=best[theirs], ratio=ratio)
        )  # fmt: skip
    return rows


def main(argv: list[str]) -> None:
    command, *rest = argv
    if command == "serve":
        kind, port, stubs = rest
        sys.path.insert(0, stubs)
        (serve_ours if kind == "ours" else serve_grpc)(int(port))
    elif command == "call":
        case, url, seconds, stubs = rest
        sys.path.insert(0, stubs)
        rate = call(case, url, float(seconds))
        print(json.dumps({"case": case, "calls_per_second": rate}))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
