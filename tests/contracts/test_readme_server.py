"""The README's example of serving a generated service from the installed package alone, run
exactly as written (but for the port): in a fresh virtualenv holding only mcsv-contracts[server]
and the ASGI server the example names, nothing of this repository. It is then called with the
generated clients (protobuf and JSON) and with raw HTTP."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import client_pb2, common_pb2
from mcsv.v1.client_twirp import ClientServiceClient

from tests.codegen.helpers import ROOT
from tests.contracts.test_client_package import clean_env, normalized
from tests.support.servers import free_port, stop_process

pytestmark = pytest.mark.slow

README_PORT = "8090"
_SECTION = re.compile(
    r"<!-- tested-package: serve -->\n(?P<body>.*?)<!-- /tested-package -->", re.S
)
_BLOCK = re.compile(r"```(?P<lang>\w+)\n(?P<code>.*?)```", re.S)
RECEIVE = "/twirp/mcsv.v1.ClientService/ReceiveNotification"


@dataclass(frozen=True)
class Example:
    install: str  # bash
    app_file: str  # the name in the Python block's first line, "# notifications.py"
    app: str
    run: str  # bash


def readme_example() -> Example:
    section = _SECTION.search((ROOT / "README.md").read_text())
    assert section, "README.md has no <!-- tested-package: serve --> section"
    blocks = [(m["lang"], m["code"]) for m in _BLOCK.finditer(section["body"])]
    assert [lang for lang, _ in blocks] == ["bash", "python", "bash"]
    (_, install), (_, app), (_, run) = blocks
    first_line = app.splitlines()[0]
    assert first_line.startswith("# ") and first_line.endswith(".py"), first_line
    return Example(install, first_line[2:], app, run)


def sh(
    script: str, cwd: Path, venv: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Runs a README command in bash with the venv first on PATH, as a user who activated it."""
    env = clean_env()
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    env["VIRTUAL_ENV"] = str(venv)
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@dataclass(frozen=True)
class Served:
    url: str
    venv: Path
    packages: set[str]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    example = readme_example()
    base = tmp_path_factory.mktemp("readme-server")
    # ./gen as the README's command names it, without build leftovers
    shutil.copytree(
        ROOT / "gen",
        base / "gen",
        ignore=shutil.ignore_patterns("*.egg-info", "build", "dist", "__pycache__"),
    )
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean_env())
    installed = sh(example.install, base, venv)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = sh("python -m pip list --format=json", base, venv)
    packages = {normalized(p["name"]) for p in json.loads(listed.stdout)}

    (base / example.app_file).write_text(example.app)
    port = free_port()
    assert f"--port {README_PORT}" in example.run
    log = (base / "server.log").open("w")
    env = clean_env()
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    server = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", example.run.replace(README_PORT, str(port))],
        cwd=base,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_answering(url, server, base / "server.log")
        yield Served(url, venv, packages)
    finally:
        stop_process(server)
        log.close()


def _wait_until_answering(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the README's server exited:\n{log.read_text()}")
        try:
            httpx.get(url + "/", timeout=1)  # any HTTP answer: it is up
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the README's server did not answer:\n{log.read_text()}"
                ) from None
            time.sleep(0.1)


def test_the_venv_holds_only_the_package_and_the_asgi_server(served: Served) -> None:
    assert {"mcsv-contracts", "protobuf", "urllib3", "aiohttp", "uvicorn"} <= served.packages
    assert not served.packages & {"twirp", "starlette", "hypercorn", "mcsv"}
    for module in ("twirp", "internal", "starlette"):
        found = sh(
            f"python -c 'import importlib.util; print(importlib.util.find_spec(\"{module}\"))'",
            served.venv,
            served.venv,
        )
        assert found.stdout.strip() == "None", (module, found.stdout, found.stderr)


def test_it_answers_the_lifespan_protocol(served: Served) -> None:
    """Served on its own, TwirpApp answers uvicorn's lifespan startup."""
    log = (served.venv.parent / "server.log").read_text()
    assert "Application startup complete." in log, log
    assert "lifespan" not in log.lower(), log


@pytest.mark.parametrize("use_json", [False, True], ids=["protobuf", "json"])
def test_generated_client_calls_it(served: Served, use_json: bool) -> None:
    notification_id = f"n-{'json' if use_json else 'protobuf'}"
    request = client_pb2.ReceiveNotificationRequest(
        notification_id=notification_id,
        email_delivered=common_pb2.EmailDelivery(
            user_id="u-1", outcome=common_pb2.OUTCOME_SUCCEEDED
        ),
    )
    with ClientServiceClient(served.url, use_json=use_json, timeout=5) as client:
        assert client.receive_notification(request).first_delivery is True
        assert client.receive_notification(request).first_delivery is False
        with pytest.raises(TwirpError) as raised:
            client.receive_notification(client_pb2.ReceiveNotificationRequest())
    assert raised.value == TwirpError(
        ErrorCode.INVALID_ARGUMENT, "notification_id: is required", {"argument": "notification_id"}
    )


def _error(response: httpx.Response, code: ErrorCode) -> dict[str, object]:
    assert response.status_code == code.http_status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, object] = response.json()
    assert body["code"] == code.value
    return body


def test_raw_http_bad_route(served: Served) -> None:
    body = _error(httpx.get(served.url + RECEIVE), ErrorCode.BAD_ROUTE)
    assert body["meta"] == {"twirp_invalid_route": f"GET {RECEIVE}"}
    body = _error(
        httpx.post(served.url + "/twirp/mcsv.v1.ClientService/Nope", json={}), ErrorCode.BAD_ROUTE
    )
    assert body["meta"] == {"twirp_invalid_route": "POST /twirp/mcsv.v1.ClientService/Nope"}


def test_raw_http_malformed(served: Served) -> None:
    headers = {"Content-Type": "application/json"}
    _error(httpx.post(served.url + RECEIVE, headers=headers, content=b"{no"), ErrorCode.MALFORMED)
    protobuf = {"Content-Type": "application/protobuf"}
    _error(
        httpx.post(served.url + RECEIVE, headers=protobuf, content=b"\x0a\x09ab"),
        ErrorCode.MALFORMED,
    )


def test_raw_http_errors(served: Served) -> None:
    json_headers = {"Content-Type": "application/json; charset=utf-8"}
    body = _error(
        httpx.post(served.url + RECEIVE, headers=json_headers, content=b"{}"),
        ErrorCode.INVALID_ARGUMENT,
    )
    assert body == {
        "code": "invalid_argument",
        "msg": "notification_id: is required",
        "meta": {"argument": "notification_id"},
    }
    unknown_outcome = {"notification_id": "n-raw", "email_delivered": {"outcome": 99}}
    body = _error(
        httpx.post(served.url + RECEIVE, headers=json_headers, json=unknown_outcome),
        ErrorCode.INVALID_ARGUMENT,
    )
    assert body["meta"] == {"argument": "email_delivered.outcome"}
