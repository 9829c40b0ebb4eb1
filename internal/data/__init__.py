"""The database: one peewee Database per service, opened from a URL (SQLite by default,
PostgreSQL with pooled connections for scale-out), and schema creation that runs on both."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import peewee
from playhouse.pool import PooledPostgresqlDatabase

# SQLite is shared by several processes (service replicas, workers): WAL lets readers and one
# writer proceed together, and busy_timeout makes a writer wait for the lock instead of failing.
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 10_000,
    "synchronous": "normal",
    "foreign_keys": 1,
}


_SCHEMA_LOCK = 4_242_001  # any constant: the advisory lock id that schema changes take


class DatabaseURLError(ValueError):
    """DATABASE_URL names a database this system cannot use."""


def open_database(url: str) -> peewee.Database:
    """sqlite:///abs/path.db, sqlite:relative.db, postgresql://user@host:port/db (pooled)."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme == "sqlite":
        path = url.removeprefix("sqlite://").removeprefix("sqlite:")
        if path not in ("", ":memory:", "/:memory:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return peewee.SqliteDatabase(path or ":memory:", pragmas=SQLITE_PRAGMAS)
    if scheme in ("postgres", "postgresql"):
        return PooledPostgresqlDatabase(  # type: ignore[no-untyped-call]  # untyped in the stubs
            parts.path.lstrip("/"),
            user=parts.username,
            password=parts.password,
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            max_connections=20,
            stale_timeout=300,
        )
    raise DatabaseURLError(
        f"unsupported database URL {url!r}: use sqlite:///path.db or postgresql://..."
    )


def create_tables(database: peewee.Database, models: Iterable[type[peewee.Model]]) -> None:
    """Creates the tables and indexes that do not exist yet (safe to run on every start,
    from several processes at once)."""
    models = list(models)
    database.bind(models)
    with database.connection_context(), database.atomic():
        if isinstance(database, peewee.PostgresqlDatabase):
            # CREATE TABLE IF NOT EXISTS races between processes on PostgreSQL (both see no
            # table, one fails on the catalogue): take turns, for the transaction's length.
            database.execute_sql(  # type: ignore[no-untyped-call]
                "SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,)
            )
        database.create_tables(models, safe=True)


def write_transaction(database: peewee.Database) -> Any:
    """A transaction that will write. On SQLite it takes the write lock up front (BEGIN
    IMMEDIATE): two processes that both read then write would otherwise deadlock on the lock
    upgrade, and one of them fail with 'database is locked'."""
    if isinstance(database, peewee.SqliteDatabase):
        return database.atomic("IMMEDIATE")
    return database.atomic()
