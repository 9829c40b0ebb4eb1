"""Schema creation and migrations on both databases: SQLite and the machine's PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
from playhouse.migrate import SchemaMigrator

from internal.data import SchemaVersion, create_tables, drop_column_index, open_database
from tests.e2e.backends import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/schema.db"
    else:
        with postgres_database() as url:
            yield url


class Widget(peewee.Model):
    name = peewee.TextField()


class WidgetV2(peewee.Model):
    name = peewee.TextField()
    colour = peewee.TextField(default="grey")

    class Meta:
        table_name = "widget"


def add_colour(migrator: SchemaMigrator) -> None:
    migrator.add_column("widget", "colour", peewee.TextField(default="grey")).run()


def columns(database: peewee.Database) -> set[str]:
    with database.connection_context():
        return {column.name for column in database.get_columns("widget")}


def version(database: peewee.Database) -> int:
    with database.connection_context():
        return int(SchemaVersion.get_by_id("widgets").version)


def test_a_new_database_gets_the_tables_as_they_are_now(database_url: str) -> None:
    database = open_database(database_url)
    create_tables(database, [WidgetV2], service="widgets", migrations=[add_colour])
    assert columns(database) == {"id", "name", "colour"}
    assert version(database) == 1


def test_an_older_database_is_migrated_once(database_url: str) -> None:
    database = open_database(database_url)
    create_tables(database, [Widget], service="widgets")  # version 0: no colour yet
    with database.connection_context():
        Widget.create(name="old")
    assert columns(database) == {"id", "name"}

    for _ in range(2):  # the second start finds nothing to do
        create_tables(database, [WidgetV2], service="widgets", migrations=[add_colour])
    assert columns(database) == {"id", "name", "colour"}
    assert version(database) == 1
    with database.connection_context():
        assert [(w.name, w.colour) for w in WidgetV2.select()] == [("old", "grey")]


def indexes(database: peewee.Database) -> set[str]:
    with database.connection_context():
        return {index.name for index in database.get_indexes("widget")}


def test_a_migration_drops_the_plain_indexes_on_one_column_and_keeps_the_others(
    database_url: str,
) -> None:
    database = open_database(database_url)
    create_tables(database, [WidgetV2])
    with database.connection_context():
        for statement in (
            'CREATE INDEX "widget_by_name" ON "widget" ("name")',
            'CREATE INDEX "widget_name_colour" ON "widget" ("name", "colour")',
            'CREATE UNIQUE INDEX "widget_unique_name" ON "widget" ("name")',
            'CREATE INDEX "widget_colour" ON "widget" ("colour")',
        ):
            database.execute_sql(statement)  # type: ignore[no-untyped-call]

    def drop(migrator: SchemaMigrator) -> None:
        drop_column_index(migrator, "widget", "name")

    create_tables(database, [WidgetV2], service="widgets", migrations=[drop])
    assert {"widget_name_colour", "widget_unique_name", "widget_colour"} <= indexes(database)
    assert "widget_by_name" not in indexes(database)
    assert version(database) == 1


class Keyed(peewee.Model):
    key = peewee.TextField(unique=True)
    writer = peewee.IntegerField()


def test_insert_once_leaves_one_row_when_writers_race(database_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from internal.data import insert_once, write_transaction

    database = open_database(database_url)
    create_tables(database, [Keyed])

    def write(writer: int) -> tuple[int, bool]:
        with database.connection_context(), write_transaction(database):
            row, created = insert_once(Keyed, Keyed.key, key="same", writer=writer)
            return row.writer, created

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(write, range(16)))
    assert sum(created for _, created in results) == 1
    assert len({writer for writer, _ in results}) == 1  # everyone sees the winner's row
    with database.connection_context():
        assert Keyed.select().count() == 1


class Stamped(peewee.Model):
    id = peewee.TextField(primary_key=True)
    name = peewee.TextField()
    size = peewee.IntegerField(default=7)
    kept_until = peewee.DoubleField(null=True)
    payload = peewee.BlobField(null=True)


def test_rows_written_and_found_by_the_built_once_statements_are_peewees(
    database_url: str,
) -> None:
    from internal.data import create_row, find_row, insert_row, save_row, write_transaction

    database = open_database(database_url)
    create_tables(database, [Stamped])
    with database.connection_context(), write_transaction(database):
        create_row(Stamped, id="a", name="first", payload=b"\x00\x01")
        insert_row(Stamped(id="b", name="second", kept_until=1.5))
        with pytest.raises(peewee.IntegrityError), database.atomic():
            insert_row(Stamped(id="a", name="again"))  # the key is taken
    with database.connection_context():
        first = find_row(Stamped, Stamped.id, "a")
        assert first is not None and first == Stamped.get_by_id("a")
        assert (first.name, first.size, first.kept_until) == ("first", 7, None)
        assert first.payload is not None and bytes(first.payload) == b"\x00\x01"
        second = find_row(Stamped, Stamped.name, "second")
        assert second is not None and (second.id, second.kept_until) == ("b", 1.5)
        assert find_row(Stamped, Stamped.id, "missing") is None
    second.size, second.kept_until = 9, None
    with database.connection_context(), write_transaction(database):
        save_row(second)
    with database.connection_context():
        assert Stamped.get_by_id("b").size == 9 and Stamped.get_by_id("b").kept_until is None
