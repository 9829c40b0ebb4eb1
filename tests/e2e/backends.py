"""The backend combinations the end-to-end suite runs against, on this machine's real
PostgreSQL, RabbitMQ and Redis and an S3-compatible server (moto) the tests start:

  embedded               SQLite + the SQLite broker + files (the defaults)
  postgres-rabbitmq-s3   PostgreSQL + RabbitMQ + S3
  postgres-redis-s3      PostgreSQL + Redis + S3

Each run gets a fresh PostgreSQL database, empty queues and its own bucket."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2

BACKENDS = ("embedded", "postgres-rabbitmq-s3", "postgres-redis-s3")
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"
REDIS = "redis://127.0.0.1:6379/7"
QUEUES = ("emails", "conversions", "reports")


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"mcsv_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(f"{POSTGRES}/postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield f"{POSTGRES}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def empty_queues(broker_url: str) -> None:
    """Removes what earlier runs left on the shared RabbitMQ/Redis queues."""
    from internal.queue import open_broker

    broker = open_broker(broker_url)
    for queue in QUEUES:
        broker.declare_queue(queue)
    broker.flush_all()
    broker.close()


@contextmanager
def backend_env(name: str, s3_endpoint: str) -> Iterator[dict[str, str]]:
    """The settings that select a backend combination (empty for the defaults)."""
    if name == "embedded":
        yield {}
        return
    broker = RABBITMQ if "rabbitmq" in name else REDIS
    empty_queues(broker)
    with postgres_database() as database_url:
        bucket = f"mcsv-{uuid.uuid4().hex[:12]}"
        yield {
            "DATABASE_URL": database_url,
            "BROKER_URL": broker,
            "STORAGE_URL": f"s3://test-key:test-secret@{s3_endpoint}/{bucket}?secure=false",
        }
    empty_queues(broker)
