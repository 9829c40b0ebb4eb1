"""Object storage on S3 or any S3-compatible server (MinIO, ...), through the minio SDK.

Presigned URLs are genuine SigV4 query-string URLs, checked by the server itself. Unlike the
local backend, the content type of a presigned PUT is not part of its signature: the uploader
should send it as Content-Type, and the server stores what it sends."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error
from minio.helpers import check_bucket_name

from internal.storage.base import (
    ObjectNotFound,
    StorageError,
    normalize_content_type,
    validate_key,
)

MAX_PRESIGN_EXPIRY = timedelta(days=7)  # the limit of SigV4 presigned URLs
_MISSING_OBJECT_CODES = ("NoSuchKey", "NoSuchObject")
_ALREADY_CREATED_CODES = ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")


class S3Storage:
    def __init__(
        self,
        endpoint: str,
        *,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool = True,
        region: str | None = None,
        timeout_seconds: float = 30.0,
    ) -> None:
        """Connects to `endpoint` ("host:port") and creates `bucket` if it does not exist."""
        self.bucket = bucket
        self._where = f"{'https' if secure else 'http'}://{endpoint}/{bucket}"
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout_seconds, 10.0), read=timeout_seconds),
            maxsize=32,
            retries=urllib3.Retry(
                total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        )
        with self._errors("setup"):
            check_bucket_name(bucket)
            self._client = Minio(
                endpoint,
                access_key=access_key,
                secret_key=secret_key,
                secure=secure,
                region=region,
                http_client=http,
            )
        self._ensure_bucket(region)
        # Derived from a real presigned URL: the SDK may drop a default port or, on AWS, put the
        # bucket in the host name.
        probe = self.presign_get("origin-probe", timedelta(minutes=1))
        parts = urlsplit(probe)
        self.origin = f"{parts.scheme}://{parts.netloc}"

    def put(self, key: str, data: bytes, content_type: str) -> None:
        validate_key(key)
        content_type = normalize_content_type(content_type)
        with self._errors(f"put {key!r}"):
            self._client.put_object(
                self.bucket, key, io.BytesIO(data), len(data), content_type=content_type
            )

    def get(self, key: str) -> bytes:
        validate_key(key)
        with self._errors(f"get {key!r}", missing=key):
            response = self._client.get_object(self.bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def size(self, key: str) -> int:
        validate_key(key)
        with self._errors(f"stat {key!r}", missing=key):
            size = self._client.stat_object(self.bucket, key).size
        if size is None:
            raise StorageError(f"S3 reported no size for {key!r} in {self._where}")
        return size

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._errors(f"delete {key!r}"):
            self._client.remove_object(self.bucket, key)  # S3 deletes are idempotent

    def presign_get(self, key: str, expires_in: timedelta) -> str:
        validate_key(key)
        _check_expiry(expires_in)
        with self._errors(f"presign GET {key!r}"):
            return self._client.presigned_get_object(self.bucket, key, expires=expires_in)

    def presign_put(self, key: str, expires_in: timedelta, content_type: str) -> str:
        validate_key(key)
        normalize_content_type(content_type)
        _check_expiry(expires_in)
        with self._errors(f"presign PUT {key!r}"):
            return self._client.presigned_put_object(self.bucket, key, expires=expires_in)

    def _ensure_bucket(self, region: str | None) -> None:
        with self._errors("bucket check"):
            if self._client.bucket_exists(self.bucket):
                return
            try:
                self._client.make_bucket(self.bucket, location=region)
            except S3Error as error:
                if error.code not in _ALREADY_CREATED_CODES:  # else another process was first
                    raise

    @contextmanager
    def _errors(self, action: str, missing: str | None = None) -> Iterator[None]:
        """Turns the SDK's and the network's exceptions into StorageError; with `missing`, a
        missing object into ObjectNotFound."""
        try:
            yield
        except S3Error as error:
            if missing is not None and error.code in _MISSING_OBJECT_CODES:
                raise ObjectNotFound(f"no object {missing!r} in {self._where}") from error
            raise StorageError(
                f"S3 {action} failed on {self._where}: {error.code}: {error.message}"
            ) from error
        except urllib3.exceptions.MaxRetryError as error:
            raise StorageError(f"S3 {action} failed on {self._where}: {error.reason}") from error
        except (MinioException, urllib3.exceptions.HTTPError) as error:
            raise StorageError(f"S3 {action} failed on {self._where}: {error}") from error
        except ValueError as error:  # the SDK's own argument checks, e.g. the bucket name
            raise StorageError(f"S3 {action} on {self._where}: {error}") from error


def _check_expiry(expires_in: timedelta) -> None:
    if not timedelta(seconds=1) <= expires_in <= MAX_PRESIGN_EXPIRY:
        raise StorageError(
            f"a presigned S3 URL must expire in 1 second to 7 days, not {expires_in}"
        )
