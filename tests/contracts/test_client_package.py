"""The generated package (gen/, distribution mcsv-contracts) installs on its own into a fresh
venv with only what clients need, works there against a real server, and gives mypy --strict
real types: correct use passes, misuse fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.codegen.helpers import ROOT

pytestmark = pytest.mark.slow

USAGE = Path(__file__).with_name("client_usage.py")
CLIENT_DEPENDENCIES = {"mcsv-contracts", "protobuf", "urllib3", "aiohttp", "httptools"}
SERVER_ONLY = {"twirp", "starlette", "hypercorn", "uvicorn", "httpx", "requests", "structlog"}


def clean_env() -> dict[str, str]:
    """The environment without anything that would let the venv see this repository."""
    hidden = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MYPYPATH"}
    return {k: v for k, v in os.environ.items() if k not in hidden}


def run(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@dataclass(frozen=True)
class Installed:
    venv: Path
    python: Path
    packages: set[str]  # `pip list` right after installing the package, normalized names
    pip_check: subprocess.CompletedProcess[str]
    mypy_cache: Path


def normalized(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("client-package")
    # A copy of gen/ without build leftovers: a non-editable install builds in the source
    # tree (build/, *.egg-info), which must not land in the repository's gen/.
    source = base / "mcsv-contracts"
    shutil.copytree(
        ROOT / "gen",
        source,
        ignore=shutil.ignore_patterns("*.egg-info", "build", "dist", "__pycache__"),
    )
    venv = base / "venv"
    created = run([sys.executable, "-m", "venv", str(venv)], cwd=base)
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    install = run(
        [str(python), "-m", "pip", "install", "--no-input", str(source)], cwd=base, timeout=240
    )
    assert install.returncode == 0, install.stdout + install.stderr
    listed = run([str(python), "-m", "pip", "list", "--format=json"], cwd=base)
    assert listed.returncode == 0, listed.stderr
    packages = {normalized(p["name"]) for p in json.loads(listed.stdout)}
    pip_check = run([str(python), "-m", "pip", "check"], cwd=base)
    return Installed(venv, python, packages, pip_check, base / "mypy-cache")


@pytest.fixture(scope="module")
def typed(installed: Installed) -> Installed:
    """The same venv with the package's `typing` extra (protobuf's stubs), as a project that
    runs mypy installs it."""
    source = installed.venv.parent / "mcsv-contracts"
    result = run(
        [str(installed.python), "-m", "pip", "install", "--no-input", f"{source}[typing]"],
        cwd=installed.venv,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "types-protobuf"
        in run([str(installed.python), "-m", "pip", "list"], cwd=installed.venv).stdout
    )
    return installed


def test_installs_with_only_the_client_dependencies(installed: Installed) -> None:
    assert installed.packages >= CLIENT_DEPENDENCIES
    assert not installed.packages & SERVER_ONLY


def test_pip_check_passes(installed: Installed) -> None:
    assert installed.pip_check.returncode == 0, installed.pip_check.stdout


def test_clients_call_a_real_server(installed: Installed, echo_url: str, tmp_path: Path) -> None:
    script = shutil.copy(USAGE, tmp_path / "client_usage.py")
    result = run([str(installed.python), str(script), echo_url], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    seen: dict[str, Any] = json.loads(result.stdout)

    # the installed copy, not the repository's gen/
    assert Path(seen["mcsv_file"]).resolve().is_relative_to(installed.venv.resolve())
    assert seen["server_runtime_importable"] is False

    assert seen["sync"] == {
        "type": "CreateUserResponse",
        "is_empty": True,
        "error": {
            "code": "invalid_argument",
            "msg": "the request is neither empty nor the sample",
            "meta": ["received"],
        },
    }
    assert seen["async"] == {
        "type": "CreateUserResponse",
        "is_empty": True,
        "user_id": "",
        "error": {
            "code": "not_found",
            "msg": "raised not_found on purpose",
            "meta": ["answer", "code"],
        },
    }


def mypy(installed: Installed, directory: Path, source: str) -> subprocess.CompletedProcess[str]:
    """The repo's mypy, --strict, on one file, resolving imports in the package's venv only."""
    (directory / "mypy.ini").write_text("[mypy]\n")  # not the repository's configuration
    (directory / "usage.py").write_text(source)
    return run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(directory / "mypy.ini"),
            "--cache-dir",
            str(installed.mypy_cache),
            "--python-executable",
            str(installed.python),
            "usage.py",
        ],
        cwd=directory,
        timeout=120,
    )


def test_correct_usage_passes_mypy_strict(typed: Installed, tmp_path: Path) -> None:
    result = mypy(typed, tmp_path, USAGE.read_text())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found in 1 source file" in result.stdout


MISUSE = {
    "wrong-request-type": (
        """\
from mcsv.v1 import user_pb2
from mcsv.v1.user_twirp import UserServiceClient

with UserServiceClient("http://localhost:8081") as client:
    client.create_user(user_pb2.GetUserRequest())
""",
        'Argument 1 to "create_user" of "UserServiceClient" has incompatible type '
        '"GetUserRequest"; expected "CreateUserRequest"',
    ),
    "wrong-response-type": (
        """\
from mcsv.v1 import user_pb2
from mcsv.v1.user_twirp import AsyncUserServiceClient


async def name(client: AsyncUserServiceClient) -> user_pb2.GetUserResponse:
    return await client.create_user(user_pb2.CreateUserRequest())
""",
        'Incompatible return value type (got "CreateUserResponse", expected "GetUserResponse")',
    ),
    "incomplete-implementation": (
        """\
from mcsv.twirp import Context
from mcsv.v1 import job_pb2
from mcsv.v1.job_twirp import JobService


class OnlyGetJob:
    async def get_job(
        self, ctx: Context, request: job_pb2.GetJobRequest
    ) -> job_pb2.GetJobResponse:
        return job_pb2.GetJobResponse()


jobs: JobService = OnlyGetJob()
""",
        'Incompatible types in assignment (expression has type "OnlyGetJob", '
        'variable has type "JobService")',
    ),
    "twirp-error-fields": (
        """\
from mcsv.twirp import TwirpError

try:
    pass
except TwirpError as exc:
    status: str = exc.code.http_status
""",
        'Incompatible types in assignment (expression has type "int", variable has type "str")',
    ),
}


@pytest.mark.parametrize("case", sorted(MISUSE))
def test_misuse_fails_mypy_strict(typed: Installed, tmp_path: Path, case: str) -> None:
    source, error = MISUSE[case]
    result = mypy(typed, tmp_path, source)
    assert result.returncode == 1, result.stdout + result.stderr
    assert error in result.stdout, result.stdout
