"""open_storage: a storage backend chosen by URL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from internal.storage.base import Storage, StorageError
from internal.storage.local import LocalStorage
from internal.storage.s3 import S3Storage

_S3_OPTIONS = ("secure", "region")
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def open_storage(url: str, *, public_url: str, secret: str) -> Storage:
    """The storage at `url`:

    - "file:///abs/dir" or "file:relative/dir": LocalStorage in that directory, serving
      presigned URLs under `public_url` (where storage_routes are mounted), signed with `secret`.
    - "s3://ACCESS_KEY:SECRET_KEY@host:port/bucket?secure=false&region=us-east-1": S3Storage
      (secure defaults to true); the bucket is created if missing. `public_url` and `secret`
      are not used: the endpoint serves and checks its own presigned URLs.
    """
    scheme = url.partition(":")[0].lower()
    if scheme == "file":
        return LocalStorage(_file_path(url), public_url=public_url, secret=secret)
    if scheme == "s3":
        return _open_s3(url)
    raise StorageError(
        f"unsupported storage URL scheme {scheme!r}: use file:///abs/dir, file:relative/dir "
        "or s3://ACCESS_KEY:SECRET_KEY@host:port/bucket"
    )


def _file_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise StorageError(
            f"storage URL {url!r} names host {parts.netloc!r}: "
            "use file:///abs/dir or file:relative/dir"
        )
    path = unquote(parts.path)
    if not path:
        raise StorageError(f"storage URL {url!r} has no directory")
    return Path(path)


def storage_origin(url: str, *, public_url: str) -> str:
    """scheme://host[:port] that the presigned URLs of the storage at `url` start with, worked
    out without connecting (for a service that must only fetch from there)."""
    scheme = url.partition(":")[0].lower()
    if scheme == "file":
        parts = urlsplit(public_url)
    elif scheme == "s3":
        settings = _s3_settings(url)
        parts = urlsplit(f"{'https' if settings.secure else 'http'}://{settings.endpoint}")
    else:
        raise StorageError(f"unsupported storage URL scheme {scheme!r}")
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class _S3Settings:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    secure: bool
    region: str | None


def _open_s3(url: str) -> S3Storage:
    settings = _s3_settings(url)
    return S3Storage(
        settings.endpoint,
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        bucket=settings.bucket,
        secure=settings.secure,
        region=settings.region,
    )


def _s3_settings(url: str) -> _S3Settings:
    parts = urlsplit(url)
    credentials, _, endpoint = parts.netloc.rpartition("@")
    # Never repeat the URL itself in an error: it holds the secret key.
    shown = f"s3://{endpoint}{parts.path}"
    access_key, _, secret_key = credentials.partition(":")
    if not access_key or not secret_key:
        raise StorageError(f"storage URL {shown} needs ACCESS_KEY:SECRET_KEY@ before the host")
    try:
        parts.port  # noqa: B018 (parsing it is the check)
    except ValueError:
        raise StorageError(f"storage URL {shown} has an invalid port") from None
    if not parts.hostname:
        raise StorageError(f"storage URL {shown} has no host")
    bucket = parts.path.strip("/")
    if not bucket or "/" in bucket:
        raise StorageError(f"storage URL {shown} must name one bucket as its path: /bucket")
    options = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(options) - set(_S3_OPTIONS))
    if unknown:
        raise StorageError(
            f"storage URL {shown} has unknown options {unknown}; known: {list(_S3_OPTIONS)}"
        )
    secure_option = options.get("secure", ["true"])[-1].lower()
    if secure_option not in _TRUE + _FALSE:
        raise StorageError(f"storage URL {shown}: secure must be true or false")
    region = options.get("region", [""])[-1] or None
    return _S3Settings(
        endpoint=endpoint,
        access_key=unquote(access_key),
        secret_key=unquote(secret_key),
        bucket=bucket,
        secure=secure_option in _TRUE,
        region=region,
    )
