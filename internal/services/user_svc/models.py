"""user_svc's tables (users, the conversions they asked for, and the outbox of job requests
for job_svc), their schema's migrations, and their messages as the contracts carry them."""

from __future__ import annotations

import peewee
from mcsv.v1 import common_pb2, user_pb2
from playhouse.migrate import SchemaMigrator

from internal.data import create_tables, drop_column_index, open_database
from internal.services.common.times import timestamp
from internal.services.user_svc.outbox import OutboxRow

NAME = "user_svc"


class UserRow(peewee.Model):
    id = peewee.TextField(primary_key=True)
    name = peewee.TextField()
    email = peewee.TextField(unique=True)
    created_at = peewee.DoubleField()

    class Meta:
        table_name = "users"


class ConversionRow(peewee.Model):
    id = peewee.TextField(primary_key=True)
    user_id = peewee.TextField()  # indexed first in (user_id, idempotency_key)
    filename = peewee.TextField()
    options = peewee.BlobField()  # ConversionOptions
    state = peewee.IntegerField()
    job_id = peewee.TextField(default="")
    source_key = peewee.TextField()
    source_bytes = peewee.IntegerField()
    pdf_url = peewee.TextField(default="")
    result = peewee.BlobField(null=True)  # ConversionResult
    error = peewee.TextField(default="")
    created_at = peewee.DoubleField()
    finished_at = peewee.DoubleField(null=True)
    # The client's key for the upload (ConvertImageRequest.idempotency_key), unique per user;
    # NULL when none was given (NULLs never clash in a unique index).
    idempotency_key = peewee.TextField(null=True)
    # The version of the outcome recorded (ConversionReport.version): an older one is ignored.
    report_version = peewee.BigIntegerField(default=0)
    # A failed or cancelled conversion's upload is deleted then (None: kept, or gone already).
    upload_kept_until = peewee.DoubleField(null=True, index=True)

    class Meta:
        table_name = "conversions"
        indexes = (
            (("user_id", "idempotency_key"), True),
            # The newest first, of everyone or in one state (ListConversions).
            (("created_at",), False),
            (("state", "created_at"), False),
        )
        # save() writes only the fields changed: the outbox relay sets job_id with an UPDATE
        # of its own, which a handler saving a row it read earlier must not undo.
        only_save_dirty = True


MODELS = [UserRow, ConversionRow, OutboxRow]


def key_conversions(migrator: SchemaMigrator) -> None:
    """Migration 1: conversions keyed by the client's idempotency key, unique per user."""
    table = ConversionRow._meta.table_name
    migrator.add_column(table, "idempotency_key", peewee.TextField(null=True)).run()
    migrator.add_index(table, ("user_id", "idempotency_key"), unique=True).run()


def version_outcomes(migrator: SchemaMigrator) -> None:
    """Migration 2: outcome versions, and the retention of failed conversions' uploads."""
    table = ConversionRow._meta.table_name
    migrator.add_column(table, "report_version", peewee.BigIntegerField(default=0)).run()
    migrator.add_column(table, "upload_kept_until", peewee.DoubleField(null=True)).run()
    migrator.add_index(table, ("upload_kept_until",)).run()


def index_listing(migrator: SchemaMigrator) -> None:
    """Migration 3: indexes for ListConversions' newest-first pages, all or by state."""
    table = ConversionRow._meta.table_name
    migrator.add_index(table, ("created_at",)).run()
    migrator.add_index(table, ("state", "created_at")).run()


def drop_prefix_index(migrator: SchemaMigrator) -> None:
    """Migration 4: the index on conversions.user_id goes; the unique (user_id,
    idempotency_key) begins with the column and serves the same queries."""
    drop_column_index(migrator, ConversionRow._meta.table_name, "user_id")


MIGRATIONS = [key_conversions, version_outcomes, index_listing, drop_prefix_index]


def open_users(database_url: str) -> peewee.Database:
    """user_svc's database with its schema brought up to date (the outbox table included)."""
    database = open_database(database_url)
    create_tables(database, MODELS, service=NAME, migrations=MIGRATIONS)
    return database


def user_message(row: UserRow) -> user_pb2.User:
    return user_pb2.User(
        id=row.id, name=row.name, email=row.email, created_at=timestamp(row.created_at)
    )


def conversion_message(row: ConversionRow) -> user_pb2.Conversion:
    return user_pb2.Conversion(
        id=row.id,
        user_id=row.user_id,
        filename=row.filename,
        options=common_pb2.ConversionOptions.FromString(bytes(row.options)),
        state=user_pb2.ConversionState.Name(row.state),
        job_id=row.job_id,
        source_bytes=row.source_bytes,
        pdf_url=row.pdf_url,
        result=common_pb2.ConversionResult.FromString(bytes(row.result)) if row.result else None,
        error=row.error,
        created_at=timestamp(row.created_at),
        finished_at=timestamp(row.finished_at),
        upload_kept_until=timestamp(row.upload_kept_until),
    )
