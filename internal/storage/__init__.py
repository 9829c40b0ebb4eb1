"""Object storage behind one interface, `Storage`: files on the local disk with HMAC-signed
expiring URLs (LocalStorage, served by storage_routes), or S3 through the minio SDK (S3Storage).
open_storage picks one from a URL."""

from internal.storage.base import ObjectNotFound, Storage, StorageError, validate_key
from internal.storage.factory import open_storage, storage_origin
from internal.storage.local import LocalStorage
from internal.storage.routes import storage_routes
from internal.storage.s3 import S3Storage
from internal.storage.signing import URLRefused

__all__ = [
    "LocalStorage",
    "ObjectNotFound",
    "S3Storage",
    "Storage",
    "StorageError",
    "URLRefused",
    "open_storage",
    "storage_origin",
    "storage_routes",
    "validate_key",
]
