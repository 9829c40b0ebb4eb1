"""`buf breaking` (the repo's buf.yaml: FILE rules) tells a wire-incompatible change of the
contracts from a compatible one, and the contracts pass `buf lint`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.codegen.helpers import ROOT, buf

USER_PROTO = Path("proto/mcsv/v1/user.proto")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of the repo's buf workspace (buf.yaml with `modules: - path: proto`)."""
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    return tmp_path


def breaking(workspace: Path) -> subprocess.CompletedProcess[str]:
    """The copy checked against the repo's contracts."""
    return buf("breaking", str(workspace), "--against", str(ROOT), cwd=workspace)


def edit_message(workspace: Path, message: str, old: str, new: str) -> None:
    """Replaces `old` by `new` inside `message <message> { ... }` of user.proto."""
    path = workspace / USER_PROTO
    text = path.read_text()
    block = re.search(rf"^message {message} \{{\n.*?^\}}\n", text, re.M | re.S)
    assert block is not None, f"no message {message} in {USER_PROTO}"
    assert block[0].count(old) == 1, f"{old!r} is not once in {message}"
    path.write_text(text[: block.start()] + block[0].replace(old, new) + text[block.end() :])


def test_the_unchanged_contracts_are_not_breaking(workspace: Path) -> None:
    result = breaking(workspace)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_adding_a_field_is_not_breaking(workspace: Path) -> None:
    edit_message(
        workspace,
        "CreateUserRequest",
        "  string email = 2;\n",
        "  string email = 2;\n  string locale = 3;\n",
    )
    result = breaking(workspace)
    assert result.returncode == 0, result.stdout + result.stderr


def test_renumbering_a_field_is_breaking(workspace: Path) -> None:
    edit_message(workspace, "CreateUserRequest", "string email = 2;", "string email = 5;")
    result = breaking(workspace)
    assert result.returncode != 0
    assert str(USER_PROTO) in result.stdout
    assert (
        'Previously present field "2" with name "email" on message "CreateUserRequest" '
        "was deleted." in result.stdout
    ), result.stdout + result.stderr


def test_changing_a_field_type_is_breaking(workspace: Path) -> None:
    edit_message(workspace, "CreateUserRequest", "string name = 1;", "int64 name = 1;")
    result = breaking(workspace)
    assert result.returncode != 0
    assert (
        'Field "1" with name "name" on message "CreateUserRequest" changed type '
        'from "string" to "int64".' in result.stdout
    ), result.stdout + result.stderr


def test_the_contracts_pass_buf_lint() -> None:
    result = buf("lint", cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
