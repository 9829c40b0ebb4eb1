"""The README's curl examples, run exactly as written (but for the server address) against the
real system: JSON, protobuf through buf convert and through protoc, and an error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.system import whole_system
from tests.support.servers import ROOT

README_URL = "http://localhost:8081"
_BLOCK = re.compile(r"<!-- tested: (?P<name>[\w-]+) -->\n```bash\n(?P<script>.*?)```", re.S)


def readme_examples() -> dict[str, str]:
    return {m["name"]: m["script"] for m in _BLOCK.finditer((ROOT / "README.md").read_text())}


@pytest.fixture(scope="module")
def user_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with whole_system(tmp_path_factory.mktemp("readme"), workers=1) as system:
        yield system.settings.url("user_svc")


def run_example(name: str, url: str) -> str:
    script = readme_examples()[name].replace(README_URL, url)
    tools = str(Path(sys.executable).parent)  # buf and protoc live beside the venv's python
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env={**os.environ, "PATH": tools + os.pathsep + os.environ["PATH"]},
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def test_the_readme_has_the_examples() -> None:
    assert set(readme_examples()) == {
        "curl-json",
        "curl-protobuf-buf",
        "curl-protobuf-protoc",
        "curl-error",
    }


def test_json_call(user_url: str) -> None:
    answer = json.loads(run_example("curl-json", user_url))
    assert answer["user"]["name"] == "Ada"
    assert answer["user"]["email"] == "ada@example.com"
    assert answer["job_id"]


def test_protobuf_call_with_buf_convert(user_url: str) -> None:
    answer = json.loads(run_example("curl-protobuf-buf", user_url))
    assert answer["user"]["name"] == "Ada"
    assert answer["user"]["email"] == "ada@example.com"


def test_protobuf_call_with_protoc(user_url: str) -> None:
    answer = run_example("curl-protobuf-protoc", user_url)
    assert 'name: "Ada"' in answer
    assert 'email: "ada@example.com"' in answer


def test_error_answer_is_as_documented(user_url: str) -> None:
    script = readme_examples()["curl-error"]
    documented = [line[2:] for line in script.splitlines() if line.startswith("# ")]
    assert json.loads(run_example("curl-error", user_url)) == json.loads(documented[0])
