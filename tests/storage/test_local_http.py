"""LocalStorage's presigned URLs used over real HTTP against storage_routes served by uvicorn."""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from internal.storage import LocalStorage, storage_routes
from internal.storage.routes import CHUNK_BYTES
from tests.storage.conftest import MAX_PUT_BYTES, LocalServer

MINUTE = timedelta(minutes=1)
# A connection still open this long after the answer is one the server forgot to close.
KEPT_OPEN_SECONDS = 15.0


def _key(name: str) -> str:
    """A key unique to this test run, as the servers are shared by the session."""
    return f"uploads/{os.urandom(6).hex()}/{name}"


def _replace_param(url: str, name: str, value: str) -> str:
    return re.sub(rf"([?&]{name}=)[^&]*", rf"\g<1>{value}", url)


def _flip_last_hex_digit(url: str) -> str:
    return url[:-1] + ("0" if url[-1] != "0" else "1")


def test_presigned_get_returns_the_bytes_and_content_type(local_server: LocalServer) -> None:
    storage = local_server.storage
    key = _key("notes.txt")
    storage.put(key, b"hello from storage", "text/plain")
    response = httpx.get(storage.presign_get(key, MINUTE))
    assert response.status_code == 200
    assert response.content == b"hello from storage"
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["content-length"] == str(len(b"hello from storage"))


def test_large_objects_stream_out_intact(local_server: LocalServer) -> None:
    storage = local_server.storage
    key = _key("big.png")
    data = os.urandom(600 * 1024)  # larger than one read chunk
    storage.put(key, data, "image/png")
    with httpx.stream("GET", storage.presign_get(key, MINUTE)) as response:
        assert response.headers["content-length"] == str(len(data))
        assert response.read() == data


def test_head_answers_headers_only(local_server: LocalServer) -> None:
    storage = local_server.storage
    key = _key("photo.jpeg")
    storage.put(key, b"\xff\xd8 jpeg", "image/jpeg")
    response = httpx.head(storage.presign_get(key, MINUTE))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["content-length"] == "7"
    assert response.content == b""


def test_presigned_put_stores_the_bytes(local_server: LocalServer) -> None:
    storage = local_server.storage
    key = f"pdfs/{os.urandom(6).hex()}.pdf"
    url = storage.presign_put(key, MINUTE, "application/pdf")
    response = httpx.put(
        url, content=b"%PDF-1.7 first", headers={"Content-Type": "application/pdf"}
    )
    assert response.status_code == 200, response.text
    assert storage.get(key) == b"%PDF-1.7 first"
    # A PUT URL is used once: replayed (a leaked URL), it is refused and changes nothing.
    response = httpx.put(
        url, content=b"%PDF-1.7 second", headers={"Content-Type": "application/pdf"}
    )
    assert response.status_code == 409 and "used once" in response.text
    fetched = httpx.get(storage.presign_get(key, MINUTE))
    assert fetched.content == b"%PDF-1.7 first"
    assert fetched.headers["content-type"] == "application/pdf"


def test_presigned_put_streams_a_chunked_body(local_server: LocalServer) -> None:
    storage = local_server.storage
    key = _key("chunked.png")
    pieces = [os.urandom(10_000) for _ in range(5)]

    def body() -> Iterator[bytes]:
        yield from pieces

    response = httpx.put(
        storage.presign_put(key, MINUTE, "image/png"),
        content=body(),
        headers={"Content-Type": "image/png"},
    )
    assert response.status_code == 200, response.text
    assert storage.get(key) == b"".join(pieces)


@pytest.mark.parametrize("size", [3 * CHUNK_BYTES + 123, 5 * CHUNK_BYTES])
def test_a_put_of_several_chunks_is_stored_intact_and_one_too_large_leaves_nothing(
    tmp_path: Path, size: int
) -> None:
    # Bodies of more than one chunk go to a temporary file as they arrive (in-process: the
    # shared server's limit is below one chunk).
    storage = LocalStorage(tmp_path, public_url="http://testserver", secret="s" * 32)
    app = Starlette(routes=storage_routes(storage, 4 * CHUNK_BYTES))
    data = os.urandom(size)

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 50_000):
            yield data[start : start + 50_000]

    async def put(url: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            return await client.put(url, content=pieces(), headers={"Content-Type": "image/png"})

    key = _key("several.png")
    response = asyncio.run(put(storage.presign_put(key, MINUTE, "image/png")))
    if size <= 4 * CHUNK_BYTES:
        assert response.status_code == 200, response.text
        assert storage.get(key) == data
    else:
        assert response.status_code == 413
        assert not storage.exists(key)
    assert list((storage.root / "tmp").iterdir()) == []


def test_tampered_urls_are_refused(local_server: LocalServer) -> None:
    storage = local_server.storage
    key, other = _key("mine.png"), _key("theirs.png")
    storage.put(key, b"mine", "image/png")
    storage.put(other, b"theirs", "image/png")
    url = storage.presign_get(key, MINUTE)
    expires = int(re.search(r"expires=(\d+)", url).group(1))  # type: ignore[union-attr]
    tampered = {
        "signature": _flip_last_hex_digit(url),
        "key": url.replace(key, other),
        "expiry": _replace_param(url, "expires", str(expires + 3600)),
        "method": _replace_param(url, "method", "PUT"),
        "no signature": _replace_param(url, "sig", ""),
        "non-ASCII signature": _replace_param(url, "sig", "%C3%A9"),
        "non-ASCII expiry": _replace_param(url, "expires", "%D9%A3"),
        "unknown method": _replace_param(url, "method", "DELETE"),
    }
    for what, bad_url in tampered.items():
        response = httpx.get(bad_url)
        assert response.status_code == 403, what
        assert response.headers["content-type"].startswith("text/plain")
        assert b"theirs" not in response.content and b"mine" not in response.content
    assert httpx.get(tampered["signature"]).text.strip() == "signature does not match"
    # Relabelled as a PUT URL and used for a PUT: the signature still says GET.
    response = httpx.put(tampered["method"], content=b"x", headers={"Content-Type": "image/png"})
    assert response.status_code == 403
    assert response.text.startswith("signature does not match")
    assert storage.get(key) == b"mine"
    assert "missing signature" in httpx.get(url.partition("?")[0]).text


def test_a_url_signed_with_another_secret_is_refused(local_server: LocalServer) -> None:
    key = _key("a.png")
    local_server.storage.put(key, b"x", "image/png")
    impostor = LocalStorage(
        local_server.storage.root, public_url=local_server.url, secret="another secret entirely"
    )
    response = httpx.get(impostor.presign_get(key, MINUTE))
    assert response.status_code == 403
    assert "signature does not match" in response.text


def test_urls_only_work_for_the_method_they_were_signed_for(local_server: LocalServer) -> None:
    storage = local_server.storage
    key = _key("a.png")
    storage.put(key, b"original", "image/png")
    get_url = storage.presign_get(key, MINUTE)
    put_url = storage.presign_put(key, MINUTE, "image/png")
    response = httpx.put(get_url, content=b"overwrite", headers={"Content-Type": "image/png"})
    assert response.status_code == 403
    assert response.text.strip() == "this URL is signed for GET, not PUT"
    response = httpx.get(put_url)
    assert response.status_code == 403
    assert response.text.strip() == "this URL is signed for PUT, not GET"
    assert storage.get(key) == b"original"


def test_a_put_with_another_content_type_is_refused(local_server: LocalServer) -> None:
    storage = local_server.storage
    key = _key("a.png")
    url = storage.presign_put(key, MINUTE, "image/png")
    for headers in ({"Content-Type": "text/html"}, {}):
        response = httpx.put(url, content=b"<script>", headers=headers)
        assert response.status_code == 403
    assert not storage.exists(key)
    # Media types are case-insensitive.
    response = httpx.put(url, content=b"png", headers={"Content-Type": "IMAGE/PNG"})
    assert response.status_code == 200


def test_expired_urls_are_refused(local_server: LocalServer) -> None:
    storage = local_server.storage
    key = _key("a.png")
    storage.put(key, b"x", "image/png")
    response = httpx.get(storage.presign_get(key, timedelta(seconds=-1)))
    assert response.status_code == 403
    assert response.text.strip() == "URL expired"
    url = storage.presign_put(key, timedelta(seconds=-1), "image/png")
    response = httpx.put(url, content=b"new", headers={"Content-Type": "image/png"})
    assert response.status_code == 403
    assert storage.get(key) == b"x"


def test_a_put_over_the_limit_is_refused_and_stores_nothing(local_server: LocalServer) -> None:
    storage = local_server.storage
    key = _key("big.png")
    url = storage.presign_put(key, MINUTE, "image/png")
    too_big = os.urandom(MAX_PUT_BYTES + 1)
    response = httpx.put(url, content=too_big, headers={"Content-Type": "image/png"})
    assert response.status_code == 413
    assert response.text.strip() == f"object larger than {MAX_PUT_BYTES} bytes"

    def chunked() -> Iterator[bytes]:  # no Content-Length: caught while streaming
        for start in range(0, len(too_big), 8192):
            yield too_big[start : start + 8192]

    response = httpx.put(url, content=chunked(), headers={"Content-Type": "image/png"})
    assert response.status_code == 413
    assert not storage.exists(key)
    assert list((storage.root / "tmp").iterdir()) == []
    exactly = os.urandom(MAX_PUT_BYTES)
    response = httpx.put(url, content=exactly, headers={"Content-Type": "image/png"})
    assert response.status_code == 200
    assert storage.get(key) == exactly


def test_a_missing_object_is_404(local_server: LocalServer) -> None:
    response = httpx.get(local_server.storage.presign_get(_key("none.png"), MINUTE))
    assert response.status_code == 404
    assert response.text.strip() == "no such object"


@pytest.mark.parametrize(
    "path", ["/storage/uploads/%2E%2E/%2E%2E/secret", "/storage/uploads%5Cx.png", "/storage/.x"]
)
def test_bad_keys_in_urls_are_refused(local_server: LocalServer, path: str) -> None:
    response = httpx.get(f"{local_server.url}{path}?method=GET&expires=9999999999&sig=00")
    assert response.status_code == 400
    assert "invalid storage key" in response.text


def _put_and_wait_for_close(
    local_server: LocalServer, url: str, head: dict[str, str], body: bytes
) -> bytes:
    """Sends a PUT's head and `body` over a socket and then nothing more, without closing;
    returns all the server answered once it closed the connection. A server that keeps it
    open fails the test."""
    parts = httpx.URL(url)
    lines = [f"PUT {parts.raw_path.decode()} HTTP/1.1", f"Host: {parts.host}:{parts.port}"]
    lines += [f"{name}: {value}" for name, value in head.items()]
    with socket.create_connection((parts.host, parts.port), timeout=KEPT_OPEN_SECONDS) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        answer = b""
        try:
            while chunk := sock.recv(65536):  # until the server closes the connection
                answer += chunk
        except TimeoutError:
            pytest.fail(f"the connection stayed open {KEPT_OPEN_SECONDS} s after {answer!r}")
        except ConnectionResetError:
            pass  # closed with part of the body unread: the answer came before
    return answer


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_a_put_found_too_large_while_streaming_gets_413_and_a_closed_connection(
    local_server: LocalServer,
) -> None:
    storage = local_server.storage
    key = _key("endless.png")
    url = storage.presign_put(key, MINUTE, "image/png")
    # Chunked, so the size shows only while reading, and well past the limit (more than the
    # server buffers); the client then waits, as one still streaming a large body would.
    body = b"".join(_chunk(os.urandom(8192)) for _ in range(MAX_PUT_BYTES * 5 // 8192))
    head = {"Content-Type": "image/png", "Transfer-Encoding": "chunked"}
    answer = _put_and_wait_for_close(local_server, url, head, body)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"object larger than" in answer
    assert not storage.exists(key)


def test_a_put_declaring_too_large_a_body_gets_413_and_a_closed_connection(
    local_server: LocalServer,
) -> None:
    storage = local_server.storage
    key = _key("declared.png")
    url = storage.presign_put(key, MINUTE, "image/png")
    head = {"Content-Type": "image/png", "Content-Length": str(MAX_PUT_BYTES * 100)}
    answer = _put_and_wait_for_close(local_server, url, head, os.urandom(1000))
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert not storage.exists(key)


def test_a_put_whose_body_stalls_gets_408_and_a_closed_connection(
    local_server: LocalServer,
) -> None:
    storage = local_server.storage
    key = _key("stalled.png")
    url = storage.presign_put(key, MINUTE, "image/png")
    head = {"Content-Type": "image/png", "Content-Length": "1000"}
    answer = _put_and_wait_for_close(local_server, url, head, b"x" * 10)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"did not arrive in time" in answer
    assert not storage.exists(key)  # nothing of the stalled body is stored
    assert list((storage.root / "tmp").iterdir()) == []
    # The server serves on, and the URL was not used up: it works for a whole body (once).
    response = httpx.put(url, content=b"whole", headers={"Content-Type": "image/png"})
    assert response.status_code == 200
    assert storage.get(key) == b"whole"


def _put_in_parts(url: str, length: int, parts: list[tuple[float, bytes]]) -> bytes:
    """Sends a PUT's head declaring `length` bytes, then each part after its pause (seconds),
    stopping early should the server answer; returns the answer (all of it, until the
    server closes the connection or has answered in full)."""
    target = httpx.URL(url)
    head = (
        f"PUT {target.raw_path.decode()} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        f"Content-Type: image/png\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((target.host, target.port), timeout=KEPT_OPEN_SECONDS) as sock:
        sock.sendall(head.encode())
        for pause, data in parts:
            sock.settimeout(pause or None)
            try:
                if pause and (early := sock.recv(65536)):  # answered (refused) meanwhile
                    return early + _read_to_close(sock)
            except TimeoutError:
                pass
            sock.settimeout(KEPT_OPEN_SECONDS)
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(KEPT_OPEN_SECONDS)
        return _read_to_close(sock)


def _read_to_close(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def test_a_put_trickling_below_the_minimum_rate_gets_408(local_server: LocalServer) -> None:
    """1 s (BODY_TIMEOUT_SECONDS), and one more per 16 KiB received: ten bytes every 0.1 s
    earn almost nothing."""
    storage = local_server.storage
    key = _key("trickle.png")
    url = storage.presign_put(key, MINUTE, "image/png")
    answer = _put_in_parts(url, 1000, [(0.1, b"x" * 10)] * 60)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"did not arrive in time" in answer
    assert not storage.exists(key)


def test_a_put_whose_sender_pauses_no_longer_than_its_first_part_earned_is_stored(
    local_server: LocalServer,
) -> None:
    """48 KiB at once earn 3 s beyond the 1 s: a pause of 2 s, then the rest, is read."""
    storage = local_server.storage
    key = _key("late.png")
    url = storage.presign_put(key, MINUTE, "image/png")
    body = os.urandom(MAX_PUT_BYTES)
    first = 48 * 1024
    answer = _put_in_parts(url, len(body), [(0, body[:first]), (2.0, body[first:])])
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert storage.get(key) == body
