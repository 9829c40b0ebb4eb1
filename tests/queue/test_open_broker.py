"""open_broker: the broker a URL names, with Dramatiq's middleware but no retry policy (the
job layer's), and a clear error for a URL it cannot serve. Redis and RabbitMQ run for real on
this machine."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dramatiq import Broker
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name, xq_name
from dramatiq.middleware import AgeLimit, Retries, TimeLimit

from internal.queue import SQLiteBroker, default_middleware, open_broker
from tests.queue.harness import MAX_RETRIES, read_runs, running_workers, send, wait_for

# Running on this machine, as for the scale-out configuration.
REDIS_URL = "redis://127.0.0.1:6379/0"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


@pytest.mark.parametrize(
    "prefix",
    [
        "sqlite://",
        # The form peewee and SQLAlchemy use for absolute paths means the same.
        "sqlite:///",
    ],
)
def test_sqlite_urls_name_absolute_files(prefix: str, tmp_path: Path) -> None:
    url = f"{prefix}{tmp_path}/broker.db"  # tmp_path starts with "/"
    broker = open_broker(url)
    try:
        assert isinstance(broker, SQLiteBroker)
        assert broker.path == tmp_path / "broker.db"
        assert broker.path.is_file()
    finally:
        broker.close()


def test_a_relative_sqlite_url_is_relative_to_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    broker = open_broker("sqlite:var/broker.db", visibility_timeout=5)
    try:
        assert isinstance(broker, SQLiteBroker)
        assert broker.visibility_timeout == 5
        assert (tmp_path / "var" / "broker.db").is_file()
    finally:
        broker.close()


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("sqlite://localhost/broker.db", "names a host"),
        ("sqlite:", "names no file"),
        ("sqlite:///", "names no file"),
        ("sqlite:///var/broker.db?mode=ro", "must not have a query"),
        ("postgres://localhost/jobs", "unsupported broker URL"),
        ("broker.db", "unsupported broker URL"),
    ],
)
def test_a_url_it_cannot_serve_is_a_clear_error(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        open_broker(url)


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"visibility_timeout": 0}, "visibility_timeout must be positive"),
        ({"poll_interval": -1}, "poll_interval must be positive"),
        ({"max_deliveries": 0}, "max_deliveries must be at least 1"),
    ],
)
def test_bad_sqlite_broker_options_are_refused(
    options: dict[str, float], complaint: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=complaint):
        SQLiteBroker(tmp_path / "broker.db", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["", ":memory:"])
def test_the_sqlite_broker_needs_a_file(path: str) -> None:
    with pytest.raises(ValueError, match="needs the path of a database file"):
        SQLiteBroker(path)


def test_the_default_middleware_leaves_retries_to_the_job_layer() -> None:
    kinds = {type(m) for m in default_middleware()}
    assert Retries not in kinds
    assert {TimeLimit, AgeLimit} <= kinds


def test_open_broker_uses_the_default_middleware_unless_given() -> None:
    broker = open_broker(REDIS_URL)
    try:
        kinds = [type(m) for m in broker.middleware]
        assert kinds == [type(m) for m in default_middleware()]
    finally:
        broker.close()


# -- the same actors on the scale-out brokers ------------------------------------------------


@pytest.fixture
def queue() -> str:
    return f"mcsv-queue-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def redis_broker(queue: str) -> Iterator[Broker]:
    broker = open_broker(REDIS_URL)
    assert isinstance(broker, RedisBroker)
    broker.declare_queue(queue)
    yield broker
    broker.flush(queue)
    broker.close()


@pytest.fixture
def rabbitmq_broker(queue: str) -> Iterator[Broker]:
    broker = open_broker(RABBITMQ_URL)
    assert isinstance(broker, RabbitmqBroker)
    broker.declare_queue(queue)
    yield broker
    for name in (queue, dq_name(queue), xq_name(queue)):
        broker.channel.queue_delete(queue=name)
    broker.close()


@pytest.mark.parametrize("broker_fixture", ["redis_broker", "rabbitmq_broker"])
def test_a_worker_on_a_scale_out_broker_runs_jobs_and_reports_discarded_ones(
    broker_fixture: str, queue: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    broker: Broker = request.getfixturevalue(broker_fixture)
    url = REDIS_URL if broker_fixture == "redis_broker" else RABBITMQ_URL
    runs = tmp_path / "runs.db"
    env = {"QUEUE_TEST_BROKER_URL": url, "QUEUE_TEST_RUNS": str(runs), "QUEUE_TEST_QUEUE": queue}
    with running_workers(env, tmp_path / "workers.log") as workers:
        send(broker, "record", "ok", queue=queue)
        send(broker, "fail_always", "bad", queue=queue)
        wait_for(lambda: read_runs(runs, "discarded"), 15, "the failing job's discard", workers)

    assert [run.key for run in read_runs(runs, "done")] == ["ok"]
    assert len(read_runs(runs, "attempt")) == 1 + MAX_RETRIES
    (discarded,) = read_runs(runs, "discarded")
    assert discarded.detail == "RuntimeError: failure of bad"
