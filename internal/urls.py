"""What an http(s) URL that a request carries must look like before anything uses it (fetches
it, stores it, relays it or puts it in an email): absolute, http or https, a host, a valid
port, and only printable ASCII. Control characters (CR/LF above all, which would split an HTTP
request or a header), spaces and other whitespace are refused rather than escaped: a presigned
URL never contains them, so one that does was tampered with or corrupted."""

from __future__ import annotations

from urllib.parse import urlsplit

import yarl

MAX_URL_LENGTH = 8000


def character_problem(url: str) -> str | None:
    """What is wrong with the length or the characters of `url`, or None."""
    if len(url) > MAX_URL_LENGTH:
        return f"is longer than {MAX_URL_LENGTH} characters"
    if url.isascii() and url.isprintable() and " " not in url:  # the usual case, at C speed
        return None
    for position, character in enumerate(url):
        if not "!" <= character <= "~":  # printable ASCII other than the space
            return (
                f"contains {_describe(character)} at position {position} "
                "(URLs must be printable ASCII; percent-encode anything else)"
            )
    return None


def url_problem(url: str) -> str | None:
    """What is wrong with `url` as an http(s) URL, or None when it is well formed."""
    if (problem := character_problem(url)) is not None:
        return problem
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        return "must be an http or https URL"
    if not parts.hostname:
        return "has no host"
    try:
        # What image_svc fetches with (aiohttp, on yarl) must take it too, as it is.
        yarl.URL(url, encoded=True)
    except (TypeError, ValueError) as exc:
        return f"is not a URL ({exc})"
    return None


def _describe(character: str) -> str:
    code = ord(character)
    if character == " ":
        return "a space"
    if code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0:
        return f"the control character U+{code:04X}"
    return f"the non-ASCII character U+{code:04X}"
