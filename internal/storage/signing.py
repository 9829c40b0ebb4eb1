"""HMAC-signed, expiring URLs for the local storage backend.

A URL is `{public_url}/storage/{key}?method=GET|PUT&expires=<unix seconds>&sig=<hex>`, where sig
is HMAC-SHA256 over the method, key, expiry and (for PUT) the content type the uploader must
send. The content type is not in the URL: the server takes it from the request's Content-Type.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import quote, urlencode

from internal.storage.base import StorageError, normalize_content_type

MIN_SECRET_LENGTH = 16
SIGNED_METHODS = ("GET", "PUT")


class URLRefused(StorageError):
    """A request's presigned URL is missing, tampered with, used for another method, or expired;
    the message is a short reason fit to send back."""


class URLSigner:
    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise StorageError(
                f"the storage signing secret must be at least {MIN_SECRET_LENGTH} characters"
            )
        self._secret = secret.encode()

    def query(self, method: str, key: str, expires_at: int, content_type: str = "") -> str:
        """The query string that authorises `method` on `key` until `expires_at`."""
        signature = self._signature(method, key, expires_at, content_type)
        return urlencode({"method": method, "expires": str(expires_at), "sig": signature})

    def check(
        self,
        method: str,
        key: str,
        query: Mapping[str, str],
        content_type: str = "",
        now: float | None = None,
    ) -> None:
        """Raises URLRefused unless `query` authorises `method` on `key` now. For PUT,
        `content_type` is the request's Content-Type header."""
        signed_method = query.get("method")
        expires = query.get("expires")
        signature = query.get("sig")
        if not signed_method or not expires or not signature:
            raise URLRefused("missing signature: the URL needs method, expires and sig")
        if signed_method != method:
            if signed_method in SIGNED_METHODS:
                raise URLRefused(f"this URL is signed for {signed_method}, not {method}")
            raise URLRefused(f"this URL is not signed for {method}")
        if not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
            raise URLRefused("malformed expiry")
        if method == "PUT":
            try:
                content_type = normalize_content_type(content_type)
            except StorageError:
                raise URLRefused("missing or invalid Content-Type") from None
        else:
            content_type = ""
        expected = self._signature(method, key, int(expires), content_type)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            hint = (
                " (or the Content-Type is not the one it was signed for)" if method == "PUT" else ""
            )
            raise URLRefused(f"signature does not match{hint}")
        if int(expires) < (time.time() if now is None else now):
            raise URLRefused("URL expired")

    def _signature(self, method: str, key: str, expires_at: int, content_type: str) -> str:
        if method not in SIGNED_METHODS:
            raise StorageError(f"cannot sign method {method!r}")
        # Keys and content types are validated and hold no newlines, so the message is unambiguous.
        message = f"{method}\n{key}\n{expires_at}\n{content_type}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


def storage_path(key: str) -> str:
    """The path under which storage_routes serve `key`."""
    return "/storage/" + quote(key, safe="/")
