"""LocalStorage used directly, and the input every backend refuses."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from internal.storage import (
    LocalStorage,
    ObjectNotFound,
    StorageError,
    open_storage,
    validate_key,
)

SECRET = "0123456789abcdef0123456789abcdef"
PUBLIC_URL = "http://127.0.0.1:8081"

BAD_KEYS = [
    "",
    "/uploads/x.png",
    "../etc/passwd",
    "uploads/../../x",
    "uploads/./x",
    "uploads\\x.png",
    "uploads//x.png",
    "uploads/",
    ".hidden",
    "uploads/a b.png",
    "uploads/photo?.png",
    "uploads/é.png",
    "uploads/x\n.png",
    "a" * 513,
    "uploads/" + "a" * 256,
]
GOOD_KEYS = [
    "uploads/4f9c2a1e-7b3d-4c5e-9a8b-0c1d2e3f4a5b/photo.png",
    "pdfs/4f9c2a1e7b3d.pdf",
    "a",
    "_x/Y-1.2.jpeg",
]


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage", public_url=PUBLIC_URL, secret=SECRET)


def test_put_get_size_exists_delete(storage: LocalStorage) -> None:
    key = "uploads/u1/photo.png"
    assert not storage.exists(key)
    storage.put(key, b"\x89PNG bytes", "image/png")
    assert storage.exists(key)
    assert storage.get(key) == b"\x89PNG bytes"
    assert storage.size(key) == len(b"\x89PNG bytes")
    storage.put(key, b"replaced", "image/png")
    assert storage.get(key) == b"replaced"
    storage.delete(key)
    assert not storage.exists(key)
    storage.delete(key)  # deleting again is fine


def test_missing_objects_are_object_not_found(storage: LocalStorage) -> None:
    storage.put("uploads/u1/photo.png", b"x", "image/png")
    for key in ("pdfs/none.pdf", "uploads/u1", "uploads/u1/photo.png/deeper"):
        with pytest.raises(ObjectNotFound, match="no object"):
            storage.get(key)
        with pytest.raises(ObjectNotFound):
            storage.size(key)
        assert not storage.exists(key)
    storage.delete("uploads/u1")  # a prefix, not an object: nothing happens
    storage.delete("uploads/u1/photo.png/deeper")
    assert storage.get("uploads/u1/photo.png") == b"x"


def test_an_object_cannot_be_stored_below_another(storage: LocalStorage) -> None:
    storage.put("uploads/a.png", b"a", "image/png")
    with pytest.raises(StorageError, match=r"cannot store 'uploads/a.png/b.png'"):
        storage.put("uploads/a.png/b.png", b"b", "image/png")
    assert storage.get("uploads/a.png") == b"a"
    assert list((storage.root / "tmp").iterdir()) == []


def test_writes_leave_no_temporary_files_and_deletes_leave_no_empty_directories(
    storage: LocalStorage,
) -> None:
    storage.put("uploads/u1/a.png", b"a", "image/png")
    storage.put("uploads/u1/b.png", b"b", "image/png")
    with storage.new_upload() as upload:
        upload.write(b"never committed")
    assert list((storage.root / "tmp").iterdir()) == []
    storage.delete("uploads/u1/a.png")
    assert (storage.root / "objects" / "uploads" / "u1").is_dir()
    storage.delete("uploads/u1/b.png")
    assert list((storage.root / "objects").iterdir()) == []
    assert list((storage.root / "meta").iterdir()) == []


def test_the_stored_content_type_is_kept(storage: LocalStorage) -> None:
    storage.put("pdfs/p.bin", b"%PDF-1.7", "Application/PDF")
    with storage.open("pdfs/p.bin") as stored:
        assert (stored.content_type, stored.size, stored.file.read()) == (
            "application/pdf",
            8,
            b"%PDF-1.7",
        )


def test_an_open_object_stays_readable_when_replaced(storage: LocalStorage) -> None:
    storage.put("uploads/u1/a.png", b"first", "image/png")
    with storage.open("uploads/u1/a.png") as stored:
        storage.put("uploads/u1/a.png", b"second version", "image/png")
        assert stored.file.read() == b"first"
    assert storage.get("uploads/u1/a.png") == b"second version"


def test_readers_never_see_a_partial_object_while_writers_replace_it(
    storage: LocalStorage,
) -> None:
    key = "uploads/u1/photo.png"
    versions = [bytes([n]) * 200_000 for n in range(4)]
    storage.put(key, versions[0], "image/png")
    seen: set[bytes] = set()

    def write(version: bytes) -> None:
        for _ in range(20):
            storage.put(key, version, "image/png")

    def read() -> None:
        for _ in range(50):
            seen.add(storage.get(key))

    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(write, v) for v in versions] + [
            pool.submit(read) for _ in range(4)
        ]:
            future.result()
    assert seen <= set(versions)
    assert list((storage.root / "tmp").iterdir()) == []


def test_writes_survive_concurrent_deletes_of_their_neighbours(storage: LocalStorage) -> None:
    """Deleting the last object in a directory removes the directory; a write into that
    directory at the same moment must still land."""

    def churn(name: str) -> None:
        for _ in range(100):
            storage.put(f"uploads/shared/{name}", b"x", "image/png")
            storage.delete(f"uploads/shared/{name}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(churn, f"{n}.png") for n in range(4)]:
            future.result()
    storage.put("uploads/shared/last.png", b"last", "image/png")
    assert storage.get("uploads/shared/last.png") == b"last"


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused_everywhere(storage: LocalStorage, key: str) -> None:
    attempts: list[Callable[[], object]] = [
        lambda: storage.put(key, b"x", "image/png"),
        lambda: storage.get(key),
        lambda: storage.size(key),
        lambda: storage.exists(key),
        lambda: storage.delete(key),
        lambda: storage.presign_get(key, timedelta(minutes=5)),
        lambda: storage.presign_put(key, timedelta(minutes=5), "image/png"),
    ]
    for attempt in attempts:
        with pytest.raises(StorageError, match="invalid storage key") as caught:
            attempt()
        assert not isinstance(caught.value, ObjectNotFound)
    assert list(storage.root.rglob("*.png")) == []


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_good_keys_are_accepted(storage: LocalStorage, key: str) -> None:
    assert validate_key(key) == key
    storage.put(key, b"data", "image/jpeg")
    assert storage.get(key) == b"data"


@pytest.mark.parametrize("content_type", ["", "png", "image/", "image/png\nX-Evil: 1", "a/b;c"])
def test_bad_content_types_are_refused(storage: LocalStorage, content_type: str) -> None:
    with pytest.raises(StorageError, match="invalid content type"):
        storage.put("uploads/u1/a.png", b"x", content_type)
    with pytest.raises(StorageError, match="invalid content type"):
        storage.presign_put("uploads/u1/a.png", timedelta(minutes=5), content_type)
    assert not storage.exists("uploads/u1/a.png")


def test_presigned_urls_start_with_the_origin_and_carry_a_signature(
    storage: LocalStorage,
) -> None:
    assert storage.origin == PUBLIC_URL
    url = storage.presign_put("pdfs/p.pdf", timedelta(minutes=5), "application/pdf")
    parts = urlsplit(url)
    assert url.startswith(storage.origin + "/storage/pdfs/p.pdf?")
    query = parse_qs(parts.query)
    assert query["method"] == ["PUT"]
    assert len(query["sig"][0]) == 64
    assert 0 < int(query["expires"][0]) - time.time() <= 300


def test_construction_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="at least 16 characters"):
        LocalStorage(tmp_path, public_url=PUBLIC_URL, secret="short")
    with pytest.raises(StorageError, match="not an http"):
        LocalStorage(tmp_path, public_url="ftp://host", secret=SECRET)
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StorageError, match="cannot create storage directory"):
        LocalStorage(tmp_path / "file" / "below", public_url=PUBLIC_URL, secret=SECRET)


def test_open_storage_with_file_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = open_storage(f"file://{tmp_path}/abs", public_url=PUBLIC_URL, secret=SECRET)
    assert isinstance(absolute, LocalStorage)
    assert absolute.root == tmp_path / "abs"
    monkeypatch.chdir(tmp_path)
    relative = open_storage("file:var/storage", public_url=PUBLIC_URL + "/", secret=SECRET)
    assert isinstance(relative, LocalStorage)
    assert relative.root == tmp_path / "var" / "storage"
    relative.put("pdfs/p.pdf", b"%PDF", "application/pdf")
    assert (tmp_path / "var" / "storage" / "objects" / "pdfs" / "p.pdf").read_bytes() == b"%PDF"
    assert relative.presign_get("pdfs/p.pdf", timedelta(minutes=1)).startswith(
        PUBLIC_URL + "/storage/pdfs/p.pdf?"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/x", "unsupported storage URL scheme 'ftp'"),
        ("/just/a/path", "unsupported storage URL scheme"),
        ("file://relative/dir", "names host 'relative'"),
        ("file:", "has no directory"),
        ("s3://127.0.0.1:9000/bucket", "needs ACCESS_KEY:SECRET_KEY@"),
        ("s3://ak:sk-secret@127.0.0.1:9000", "must name one bucket"),
        ("s3://ak:sk-secret@127.0.0.1:9000/a/b", "must name one bucket"),
        ("s3://ak:sk-secret@127.0.0.1:99999/bucket", "invalid port"),
        ("s3://ak:sk-secret@/bucket", "has no host"),
        ("s3://ak:sk-secret@127.0.0.1:9000/bucket?secure=maybe", "secure must be true or false"),
        ("s3://ak:sk-secret@127.0.0.1:9000/bucket?regoin=x", "unknown options \\['regoin'\\]"),
    ],
)
def test_open_storage_refuses_bad_urls_without_revealing_secrets(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message) as caught:
        open_storage(url, public_url=PUBLIC_URL, secret=SECRET)
    assert "sk-secret" not in str(caught.value)
