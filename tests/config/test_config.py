"""Settings come from the environment, with the defaults .env.example documents."""

from __future__ import annotations

import re
from pathlib import Path

import peewee
import pytest

from internal import config, registry
from internal.data import DatabaseURLError, create_tables, open_database
from tests.support.servers import ROOT


def documented() -> dict[str, str]:
    text = (ROOT / ".env.example").read_text()
    return dict(re.findall(r"^([A-Z_]+)=(.*)$", text, re.M))


def read_variables() -> set[str]:
    source = (ROOT / "internal" / "config.py").read_text()
    names = set(re.findall(r'_(?:str|int|float|optional_url)\(env, "([A-Z_]+)"', source))
    return names | {service.url_variable for service in registry.SERVICES}


def test_every_variable_read_is_documented_and_every_documented_one_is_read() -> None:
    assert read_variables() == set(documented())


def test_the_documented_values_are_the_defaults(tmp_path: Path) -> None:
    from_example = config.load({**documented(), "MCSV_DATA_DIR": str(tmp_path)})
    defaults = config.load({"MCSV_DATA_DIR": str(tmp_path)})
    assert from_example == defaults


def test_defaults_keep_everything_under_the_data_directory(tmp_path: Path) -> None:
    settings = config.load({"MCSV_DATA_DIR": str(tmp_path)})
    assert settings.broker_url == f"sqlite:///{tmp_path}/broker.db"
    assert settings.storage_url == f"file://{tmp_path}/storage"
    assert settings.database_url_for("user_svc") == f"sqlite:///{tmp_path}/user_svc.db"
    assert settings.bind("job_svc") == ("127.0.0.1", 8082)
    assert settings.storage_public_url == settings.url("user_svc")


def test_the_storage_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = config.load({"MCSV_DATA_DIR": str(tmp_path)}).storage_secret
    second = config.load({"MCSV_DATA_DIR": str(tmp_path)}).storage_secret
    assert first == second and len(first) == 64
    assert (tmp_path / "storage-secret").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("JOB_MAX_DELIVERIES", "many", "JOB_MAX_DELIVERIES='many' is not a whole number"),
        ("MAX_UPLOAD_BYTES", "-1", "must not be negative"),
        ("RPC_TIMEOUT_SECONDS", "0", "must be positive"),
        ("USER_SVC_URL", "ftp://x:1", "USER_SVC_URL='ftp://x:1' is not an http(s) URL"),
    ],
)
def test_bad_values_name_the_variable(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        config.load({"MCSV_DATA_DIR": str(tmp_path), variable: value})


def test_a_url_without_port_cannot_be_bound(tmp_path: Path) -> None:
    settings = config.load({"MCSV_DATA_DIR": str(tmp_path), "JOB_SVC_URL": "http://jobs"})
    with pytest.raises(config.ConfigError, match="JOB_SVC_URL"):
        settings.bind("job_svc")


class Note(peewee.Model):
    text = peewee.TextField()


def test_sqlite_database_is_shared_between_connections_in_wal_mode(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nested/notes.db"
    first, second = open_database(url), open_database(url)
    create_tables(first, [Note])
    create_tables(first, [Note])  # idempotent
    with first.connection_context():
        Note.create(text="hello")
        assert isinstance(first, peewee.SqliteDatabase)
        assert first.pragma("journal_mode") == "wal"
    Note.bind(second)
    with second.connection_context():
        assert [n.text for n in Note.select()] == ["hello"]


def test_an_unknown_database_url_is_refused() -> None:
    with pytest.raises(DatabaseURLError, match="mysql://x"):
        open_database("mysql://x")
