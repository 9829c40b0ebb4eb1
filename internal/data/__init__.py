"""The database: one peewee Database per service, opened from a URL (SQLite by default,
PostgreSQL for scale-out, both with pooled connections), and schema creation that runs on
both."""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import peewee
from playhouse.migrate import SchemaMigrator
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

from internal.data.writers import WriterTurns

# SQLite is shared by several processes (service replicas, workers): WAL lets readers and one
# writer proceed together, and busy_timeout makes a writer wait for the lock instead of failing.
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 10_000,
    "synchronous": "normal",
    "foreign_keys": 1,
}


_SCHEMA_LOCK = 4_242_001  # any constant: the advisory lock id that schema changes take


M = TypeVar("M", bound=peewee.Model)


class DatabaseURLError(ValueError):
    """DATABASE_URL names a database this system cannot use."""


def open_database(url: str) -> peewee.Database:
    """sqlite:///abs/path.db, sqlite:relative.db, postgresql://user@host:port/db (pooled)."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme == "sqlite":
        path = url.removeprefix("sqlite://").removeprefix("sqlite:")
        if path in ("", ":memory:", "/:memory:"):
            return peewee.SqliteDatabase(":memory:", pragmas=SQLITE_PRAGMAS)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Connections stay open, in a pool that connection_context() takes one from and gives
        # it back to: opening one (with its pragmas) per request, and closing it, which
        # checkpoints the WAL when it is the last, cost a service a quarter of its time.
        # A connection goes from thread to thread (check_same_thread off); the pool rolls
        # back whatever a connection given back was still in.
        return PooledSqliteDatabase(  # type: ignore[no-untyped-call]  # untyped in the stubs
            path, pragmas=SQLITE_PRAGMAS, max_connections=None, check_same_thread=False
        )
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


# A schema change after a table first shipped: it gets a migrator for the database in hand
# (playhouse.migrate works on SQLite and PostgreSQL alike).
Migration = Callable[[SchemaMigrator], None]


class SchemaVersion(peewee.Model):
    """Which migrations each service has applied to this database."""

    service = peewee.TextField(primary_key=True)
    version = peewee.IntegerField()

    class Meta:
        table_name = "schema_versions"


def create_tables(
    database: peewee.Database,
    models: Iterable[type[peewee.Model]],
    *,
    service: str = "",
    migrations: Sequence[Migration] = (),
) -> None:
    """Brings a service's schema up to date, safely on every start and from several processes
    at once: creates the tables that do not exist yet (in their current shape), then applies
    the migrations this database has not had, in order, recording the version reached.
    A new database starts at the latest version: its tables are created as they are now."""
    models = list(models)
    database.bind([*models, SchemaVersion])
    with database.connection_context(), write_transaction(database):
        if isinstance(database, peewee.PostgresqlDatabase):
            # CREATE TABLE IF NOT EXISTS races between processes on PostgreSQL (both see no
            # table, one fails on the catalogue): take turns, for the transaction's length.
            database.execute_sql(  # type: ignore[no-untyped-call]
                "SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,)
            )
        existing = set(database.get_tables())
        fresh = not any(model._meta.table_name in existing for model in models)
        # Only what is missing: on PostgreSQL even CREATE INDEX IF NOT EXISTS locks the
        # table, and a process joining a running system would deadlock with its writers.
        everything: list[type[peewee.Model]] = [*models, SchemaVersion]
        missing = [m for m in everything if m._meta.table_name not in existing]
        if missing:
            database.create_tables(missing, safe=True)
        if not service:
            return
        recorded = SchemaVersion.get_or_none(SchemaVersion.service == service)
        if fresh:
            current = len(migrations)  # created as they are now
        elif recorded is None:
            current = 0  # tables from before any migration was recorded
        else:
            current = recorded.version
        migrator = SchemaMigrator.from_database(database)  # type: ignore[no-untyped-call]
        for step in migrations[current:]:
            step(migrator)
        SchemaVersion.insert(service=service, version=len(migrations)).on_conflict(
            conflict_target=[SchemaVersion.service],
            update={SchemaVersion.version: len(migrations)},
        ).execute()


def drop_column_index(migrator: SchemaMigrator, table: str, column: str) -> None:
    """A migration step: drops the plain (not unique) indexes on exactly `column` of `table`,
    whatever they are called (peewee names an index after the model class that made it), on
    SQLite and PostgreSQL alike: e.g. one on a column another index begins with, or one no
    query reads by, which every insert and update paid for."""
    database = migrator.database
    for index in database.get_indexes(table):
        if not index.unique and list(index.columns) == [column]:
            database.execute_sql(f"DROP INDEX IF EXISTS {_quoted(index.name)}")


@contextmanager
def write_transaction(database: peewee.Database) -> Iterator[None]:
    """A transaction that will write. On SQLite it takes the write lock up front (BEGIN
    IMMEDIATE): two processes that both read then write would otherwise deadlock on the lock
    upgrade, and one of them fail with 'database is locked'. Before that the writer waits
    its turn among the file's writers (writers.py): SQLite's own wait for a taken lock is a
    sleep of growing length, far longer than the transaction it waits for."""
    if isinstance(database, peewee.SqliteDatabase):
        with writer_turns(database).turn(), database.atomic("IMMEDIATE"):
            yield
    else:
        with database.atomic():
            yield


_WRITER_TURNS: weakref.WeakKeyDictionary[peewee.Database, WriterTurns] = weakref.WeakKeyDictionary()
_WRITER_TURNS_LOCK = threading.Lock()


def writer_turns(database: peewee.SqliteDatabase) -> WriterTurns:
    """The turns this process's writers to `database` take with every other writer of its
    file."""
    with _WRITER_TURNS_LOCK:
        turns = _WRITER_TURNS.get(database)
        if turns is None:
            path = None if database.database in ("", ":memory:") else database.database
            turns = _WRITER_TURNS[database] = WriterTurns(path)
        return turns


def locked(query: Any) -> Any:
    """The query with its rows locked until the transaction ends (SELECT ... FOR UPDATE), on
    databases with row locks (PostgreSQL). SQLite's write transactions are exclusive already."""
    return query.for_update() if query.model._meta.database.for_update else query


def insert_once(model: type[M], unique: Any, **values: Any) -> tuple[M, bool]:
    """Creates a row unless one with the same unique value exists; returns (row, created).
    One statement when the value is new (INSERT ... ON CONFLICT DO NOTHING RETURNING the
    row, defaults included). Two processes racing on the same value both end with the one
    row: the loser's insert does nothing and it reads the winner's (on PostgreSQL its insert
    waits for the winner's commit). Call inside a write transaction."""
    database = model._meta.database
    statement = _insert_once_statement(model, unique.name, tuple(values), database.param)
    params = [
        field.db_value(values[field.name] if field.name in values else _default(field))  # type: ignore[no-untyped-call]
        for field in statement.fields
    ]
    inserted = fetch_rows(model, statement.sql, params)
    if inserted:
        return inserted[0], True
    return model.get(unique == values[unique.name]), False


def fetch_rows(model: type[M], sql: str, params: Sequence[Any]) -> list[M]:
    """The model's rows a statement returns (a SELECT of its columns, an INSERT or UPDATE
    ... RETURNING them), converted by its fields as peewee's raw() would, without working
    out again on every call which column is which field."""
    cursor = model._meta.database.execute_sql(sql, params)
    names = tuple(column[0] for column in cursor.description)
    converters = _converters(model, names)
    rows = []
    for values in cursor.fetchall():
        row = model(__no_default__=1)
        row.__data__ = {
            name: convert(value) for (name, convert), value in zip(converters, values, strict=True)
        }
        rows.append(row)
    return rows


@functools.cache
def _converters(
    model: type[peewee.Model], columns: tuple[str, ...]
) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    """(field name, its python_value) for each column."""
    by_column = {field.column_name: field for field in model._meta.sorted_fields}
    return tuple((by_column[c].name, by_column[c].python_value) for c in columns)


def find_row(model: type[M], field: peewee.Field, value: Any) -> M | None:
    """The row whose `field` (a primary or unique key) is `value`, or None: what peewee's
    get_or_none(field == value) answers, by a statement built once per table and field."""
    database = model._meta.database
    sql = _select_statement(model, field.name, database.param)
    rows = fetch_rows(model, sql, (field.db_value(value),))  # type: ignore[no-untyped-call]
    return rows[0] if rows else None


def create_row(model: type[M], **values: Any) -> M:
    """Inserts a new row (the model's defaults for the columns not given) and returns it, as
    peewee's Model.create does for a table whose primary key is given, by a statement built
    once per table and column set."""
    row = model(**values)
    insert_row(row)
    return row


def insert_row(row: peewee.Model) -> None:
    """Inserts a row made in memory (what peewee's save(force_insert=True) does), by a
    statement built once per table and column set."""
    _write_row(row, _insert_statement)


def save_row(row: peewee.Model) -> None:
    """Writes every column of a row read whole back to its table (what peewee's save does for
    a row with a primary key), by a statement built once per table: peewee builds a query's
    SQL anew each time, which on the hot paths cost more than running it."""
    _write_row(row, _update_statement)


def _write_row(
    row: peewee.Model,
    statement_for: Callable[[type[peewee.Model], tuple[str, ...], str], _Statement],
) -> None:
    model, data = type(row), row.__data__
    database = model._meta.database
    statement = statement_for(model, tuple(data), database.param)
    params = [field.db_value(data[field.name]) for field in statement.fields]  # type: ignore[no-untyped-call]
    database.execute_sql(statement.sql, params)
    row._dirty.clear()  # type: ignore[attr-defined]  # peewee's own record of changed fields


@dataclass(frozen=True)
class _Statement:
    sql: str
    fields: tuple[peewee.Field, ...]  # whose values the parameters are, in order


@functools.cache
def _insert_once_statement(
    model: type[peewee.Model], unique: str, names: tuple[str, ...], param: str
) -> _Statement:
    """INSERT ... ON CONFLICT (unique) DO NOTHING RETURNING every column: the columns named
    and those with a default, as peewee's insert would write them."""
    meta = model._meta
    fields = tuple(f for f in meta.sorted_fields if f.name in names or f.default is not None)
    if len(fields) < len(names):
        raise ValueError(f"{model.__name__} has no field among {names}")
    table = _quoted(meta.table_name)
    columns = ", ".join(_quoted(f.column_name) for f in fields)
    returning = ", ".join(_quoted(f.column_name) for f in meta.sorted_fields)
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES ({', '.join(param for _ in fields)}) "
        f"ON CONFLICT ({_quoted(meta.fields[unique].column_name)}) DO NOTHING "
        f"RETURNING {returning}"
    )
    return _Statement(sql, fields)


@functools.cache
def _select_statement(model: type[peewee.Model], name: str, param: str) -> str:
    """SELECT every column ... WHERE the field named is the parameter."""
    meta = model._meta
    columns = ", ".join(_quoted(f.column_name) for f in meta.sorted_fields)
    where = _quoted(meta.fields[name].column_name)
    return f"SELECT {columns} FROM {_quoted(meta.table_name)} WHERE {where} = {param}"


@functools.cache
def _insert_statement(model: type[peewee.Model], names: tuple[str, ...], param: str) -> _Statement:
    """INSERT INTO ... (the columns named) VALUES (...)."""
    fields = tuple(f for f in model._meta.sorted_fields if f.name in names)
    columns = ", ".join(_quoted(f.column_name) for f in fields)
    values = ", ".join(param for _ in fields)
    table = _quoted(model._meta.table_name)
    return _Statement(f"INSERT INTO {table} ({columns}) VALUES ({values})", fields)


@functools.cache
def _update_statement(model: type[peewee.Model], names: tuple[str, ...], param: str) -> _Statement:
    """UPDATE ... SET every column named but the primary key ... WHERE the primary key."""
    meta = model._meta
    key = meta.primary_key
    if not isinstance(key, peewee.Field):  # False: a model without a primary key
        raise ValueError(f"{model.__name__} has no primary key to update by")
    fields = tuple(f for f in meta.sorted_fields if f.name in names and f is not key)
    assignments = ", ".join(f"{_quoted(f.column_name)} = {param}" for f in fields)
    sql = (
        f"UPDATE {_quoted(meta.table_name)} SET {assignments} "
        f"WHERE {_quoted(key.column_name)} = {param}"
    )
    return _Statement(sql, (*fields, key))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _default(field: peewee.Field) -> Any:
    return field.default() if callable(field.default) else field.default
