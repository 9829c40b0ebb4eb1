"""S3Storage against a real S3-compatible server: moto's, started in a subprocess."""

from __future__ import annotations

import os
import re
from datetime import timedelta

import httpx
import pytest
from minio import Minio

from internal.storage import ObjectNotFound, S3Storage, StorageError, open_storage
from tests.storage.conftest import S3_ACCESS_KEY, S3_SECRET_KEY, MotoServer
from tests.support.servers import free_port

MINUTE = timedelta(minutes=1)
PUBLIC_URL = "http://127.0.0.1:8081"  # ignored by S3 storage
SECRET = "0123456789abcdef0123456789abcdef"


def _open(moto_server: MotoServer, bucket: str) -> S3Storage:
    storage = open_storage(moto_server.storage_url(bucket), public_url=PUBLIC_URL, secret=SECRET)
    assert isinstance(storage, S3Storage)
    return storage


def _sdk(moto_server: MotoServer) -> Minio:
    return Minio(
        moto_server.endpoint,
        access_key=S3_ACCESS_KEY,
        secret_key=S3_SECRET_KEY,
        secure=False,
        region="us-east-1",
    )


def test_opening_creates_the_bucket(moto_server: MotoServer, bucket: str) -> None:
    assert not _sdk(moto_server).bucket_exists(bucket)
    first = _open(moto_server, bucket)
    assert _sdk(moto_server).bucket_exists(bucket)
    first.put("pdfs/p.pdf", b"%PDF", "application/pdf")
    # Opening it again (another process, a restart) finds the bucket and what is in it.
    assert _open(moto_server, bucket).get("pdfs/p.pdf") == b"%PDF"


def test_put_get_size_exists_delete(moto_server: MotoServer, bucket: str) -> None:
    storage = _open(moto_server, bucket)
    key = "uploads/u1/photo.png"
    data = os.urandom(300_000)
    assert not storage.exists(key)
    storage.put(key, data, "image/png")
    assert storage.exists(key)
    assert storage.get(key) == data
    assert storage.size(key) == len(data)
    storage.put(key, b"replaced", "image/png")
    assert storage.get(key) == b"replaced"
    storage.delete(key)
    assert not storage.exists(key)
    storage.delete(key)  # deleting again is fine
    with pytest.raises(ObjectNotFound, match=re.escape("no object 'uploads/u1/photo.png'")):
        storage.get(key)
    with pytest.raises(ObjectNotFound):
        storage.size(key)


def test_presigned_get_works_with_plain_http(moto_server: MotoServer, bucket: str) -> None:
    storage = _open(moto_server, bucket)
    assert storage.origin == f"http://{moto_server.endpoint}"
    storage.put("pdfs/p.pdf", b"%PDF-1.7 body", "application/pdf")
    url = storage.presign_get("pdfs/p.pdf", MINUTE)
    assert url.startswith(storage.origin + "/")
    assert "X-Amz-Signature=" in url
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == b"%PDF-1.7 body"
    assert response.headers["content-type"] == "application/pdf"


def test_presigned_put_works_with_plain_http(moto_server: MotoServer, bucket: str) -> None:
    storage = _open(moto_server, bucket)
    key = "pdfs/from-image-svc.pdf"
    url = storage.presign_put(key, MINUTE, "application/pdf")
    assert url.startswith(storage.origin + "/")
    data = os.urandom(50_000)
    response = httpx.put(url, content=data, headers={"Content-Type": "application/pdf"})
    assert response.status_code == 200, response.text
    assert storage.get(key) == data
    assert storage.size(key) == len(data)
    assert httpx.get(storage.presign_get(key, MINUTE)).headers["content-type"] == "application/pdf"


def test_a_presigned_url_for_another_key_finds_nothing(
    moto_server: MotoServer, bucket: str
) -> None:
    storage = _open(moto_server, bucket)
    storage.put("uploads/u1/a.png", b"a", "image/png")
    url = storage.presign_get("uploads/u1/a.png", MINUTE)
    response = httpx.get(url.replace("uploads/u1/a.png", "uploads/u1/b.png"))
    assert response.status_code == 404
    assert b"NoSuchKey" in response.content


def test_bad_input_is_refused_before_reaching_the_server(
    moto_server: MotoServer, bucket: str
) -> None:
    storage = _open(moto_server, bucket)
    for key in ("../x", "/abs", "a\\b", "a//b", ""):
        with pytest.raises(StorageError, match="invalid storage key"):
            storage.put(key, b"x", "image/png")
        with pytest.raises(StorageError, match="invalid storage key"):
            storage.presign_get(key, MINUTE)
    with pytest.raises(StorageError, match="invalid content type"):
        storage.put("a.png", b"x", "not a type")
    with pytest.raises(StorageError, match="1 second to 7 days"):
        storage.presign_get("a.png", timedelta(days=8))
    with pytest.raises(StorageError, match="1 second to 7 days"):
        storage.presign_put("a.png", timedelta(seconds=0), "image/png")


def test_an_invalid_bucket_name_is_a_clear_error(moto_server: MotoServer) -> None:
    with pytest.raises(StorageError, match="invalid bucket name"):
        _open(moto_server, "Bad_Bucket")


def test_an_unreachable_server_is_a_clear_error() -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    url = f"s3://{S3_ACCESS_KEY}:{S3_SECRET_KEY}@{endpoint}/bucket?secure=false&region=us-east-1"
    with pytest.raises(StorageError, match=f"failed on http://{endpoint}/bucket") as caught:
        open_storage(url, public_url=PUBLIC_URL, secret=SECRET)
    assert S3_SECRET_KEY not in str(caught.value)
