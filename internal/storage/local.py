"""Object storage on the local filesystem, with HMAC-signed expiring URLs served by
storage_routes.

Layout under the root directory:
    objects/<key>   the object's bytes
    meta/<key>      its content type
    tmp/            uploads being written; each is renamed into place when complete
"""

from __future__ import annotations

import mimetypes
import os
import stat
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import BinaryIO
from urllib.parse import urlsplit

from internal.storage.base import (
    ObjectExists,
    ObjectNotFound,
    StorageError,
    normalize_content_type,
    validate_key,
)
from internal.storage.signing import URLSigner, storage_path

DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass
class StoredObject:
    """An object opened for reading. The open file keeps its bytes readable even if the object
    is replaced or deleted meanwhile; close it, or use the object as a context manager."""

    file: BinaryIO
    size: int
    content_type: str

    def __enter__(self) -> StoredObject:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.file.close()


class LocalStorage:
    def __init__(self, root: Path, *, public_url: str, secret: str) -> None:
        """`public_url` is where storage_routes are served, e.g. "http://127.0.0.1:8081"."""
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StorageError(f"storage public URL {public_url!r} is not an http(s) URL")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._public_url = public_url.rstrip("/")
        self._signer = URLSigner(secret)
        self.root = root.resolve()
        self._objects = self.root / "objects"
        self._meta = self.root / "meta"
        self._tmp = self.root / "tmp"
        try:
            for directory in (self._objects, self._meta, self._tmp):
                directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create storage directory {self.root}: {error}") from error

    def put(self, key: str, data: bytes, content_type: str) -> None:
        validate_key(key)
        normalize_content_type(content_type)
        with self.new_upload() as upload:
            upload.write(data)
            upload.commit(key, content_type)

    def get(self, key: str) -> bytes:
        with self.open(key) as stored:
            return stored.file.read()

    def size(self, key: str) -> int:
        try:
            status = (self._objects / validate_key(key)).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"no object {key!r}") from None
        except OSError as error:
            raise StorageError(f"cannot read {key!r}: {error}") from error
        if not stat.S_ISREG(status.st_mode):
            raise ObjectNotFound(f"no object {key!r}")
        return status.st_size

    def exists(self, key: str) -> bool:
        return (self._objects / validate_key(key)).is_file()

    def delete(self, key: str) -> None:
        validate_key(key)
        for base in (self._objects, self._meta):
            path = base / key
            try:
                path.unlink(missing_ok=True)
            except (IsADirectoryError, NotADirectoryError):
                return  # a prefix of other keys, or below an object: there is no such object
            except OSError as error:
                raise StorageError(f"cannot delete {key!r}: {error}") from error
            _remove_empty_parents(path, base)

    def presign_get(self, key: str, expires_in: timedelta) -> str:
        return self._presign("GET", validate_key(key), expires_in, "")

    def presign_put(self, key: str, expires_in: timedelta, content_type: str) -> str:
        return self._presign(
            "PUT", validate_key(key), expires_in, normalize_content_type(content_type)
        )

    def check_url(
        self, method: str, key: str, query: Mapping[str, str], content_type: str = ""
    ) -> None:
        """Raises URLRefused unless the URL's query authorises this request."""
        self._signer.check(method, key, query, content_type)

    def open(self, key: str) -> StoredObject:
        """Opens an object for reading; ObjectNotFound if there is no such object."""
        validate_key(key)
        try:
            file = (self._objects / key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {key!r}") from None
        except OSError as error:
            raise StorageError(f"cannot read {key!r}: {error}") from error
        try:
            content_type = (self._meta / key).read_text().strip()
        except OSError:
            guessed, _ = mimetypes.guess_type(key)
            content_type = guessed or DEFAULT_CONTENT_TYPE
        return StoredObject(file, os.fstat(file.fileno()).st_size, content_type)

    def new_upload(self) -> Upload:
        """An upload to write in pieces; nothing is visible until it is committed."""
        return Upload(self)

    def _commit(
        self, data_file: Path, key: str, content_type: str, exclusive: bool = False
    ) -> None:
        """Makes a complete temporary file the object `key`."""
        validate_key(key)
        content_type = normalize_content_type(content_type)
        try:
            # The content type goes first, so that the object never appears without it.
            meta_file = _write_temporary(self._tmp, content_type.encode())
            try:
                self._install(meta_file, self._meta / key)
            finally:
                meta_file.unlink(missing_ok=True)
            if exclusive:
                self._install_new(data_file, self._objects / key)
            else:
                self._install(data_file, self._objects / key)
        except ObjectExists:
            raise
        except OSError as error:
            raise StorageError(f"cannot store {key!r}: {error}") from error

    def _presign(self, method: str, key: str, expires_in: timedelta, content_type: str) -> str:
        expires_at = int(time.time() + expires_in.total_seconds())
        query = self._signer.query(method, key, expires_at, content_type)
        return f"{self._public_url}{storage_path(key)}?{query}"

    def _install_new(self, source: Path, target: Path) -> None:
        """Links a complete temporary file at `target`; ObjectExists if something is there."""
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except FileExistsError:
            raise ObjectExists(f"object {target.name!r} exists") from None

    def _install(self, source: Path, target: Path) -> None:
        """Atomically moves a complete temporary file to `target`."""
        # A concurrent delete may remove the parent directory (as it prunes empty ones) between
        # mkdir and rename, or even during mkdir.
        for _ in range(10):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
                return
            except (FileNotFoundError, FileExistsError) as error:
                last_error = error
        # Persistently: an object sits where a directory is needed ("a.png" for "a.png/b.png").
        raise last_error


class Upload:
    """Bytes written to a temporary file in the storage's tmp/ directory; commit() makes them the
    object, and leaving the `with` block without committing throws them away."""

    def __init__(self, storage: LocalStorage) -> None:
        self._storage = storage
        try:
            self._file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed by commit/discard)
                dir=storage.root / "tmp", prefix="upload-", delete=False
            )
        except OSError as error:
            raise StorageError(f"cannot start an upload in {storage.root}: {error}") from error
        self._path = Path(self._file.name)
        self.size = 0

    def write(self, chunk: bytes) -> None:
        try:
            self._file.write(chunk)
        except OSError as error:
            raise StorageError(
                f"cannot write an upload in {self._storage.root}: {error}"
            ) from error
        self.size += len(chunk)

    def commit(self, key: str, content_type: str, *, exclusive: bool = False) -> None:
        """Makes what was written the object `key`, replacing any object there; with
        `exclusive`, ObjectExists if there is one (atomically: of two, one wins)."""
        try:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as error:
                raise StorageError(f"cannot store {key!r}: {error}") from error
            self._file.close()
            self._storage._commit(self._path, key, content_type, exclusive)
        finally:
            self.discard()

    def discard(self) -> None:
        self._file.close()
        self._path.unlink(missing_ok=True)

    def __enter__(self) -> Upload:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.discard()


def _write_temporary(directory: Path, data: bytes) -> Path:
    descriptor, name = tempfile.mkstemp(dir=directory, prefix="meta-")
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    return Path(name)


def _remove_empty_parents(path: Path, base: Path) -> None:
    """Removes the directories between `path` and `base` that have become empty."""
    for parent in path.parents:
        if parent == base or base not in parent.parents:
            return
        try:
            parent.rmdir()
        except OSError:
            return
