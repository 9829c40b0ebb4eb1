"""Running the real buf (and the tools beside it) from tests, and comparing generated trees."""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# buf, protoc and protoc-gen-mcsv-twirp are console scripts of the venv that runs the tests.
TOOLS = Path(sys.executable).parent


def tool_env(**extra: str) -> dict[str, str]:
    """The environment with the venv's tools first on PATH."""
    return {**os.environ, "PATH": f"{TOOLS}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def run(
    args: list[str], cwd: Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env=env or tool_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def buf(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run(["buf", *args], cwd=cwd)


def buf_generate(module: Path, plugins: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """`buf generate` of the module (a directory with a buf.yaml) with a template of just
    these plugins; give them absolute `out` directories."""
    template = json.dumps({"version": "v2", "plugins": plugins})
    return buf("generate", "--template", template, cwd=module)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (bytecode caches left out), by POSIX path relative to root."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def tree_differences(expected: dict[str, bytes], actual: dict[str, bytes]) -> list[str]:
    """What differs between two trees, readable: missing and extra files, and a unified
    diff (cut short) of each file whose bytes differ."""
    out = [f"missing: {name}" for name in sorted(expected.keys() - actual.keys())]
    out += [f"unexpected: {name}" for name in sorted(actual.keys() - expected.keys())]
    for name in sorted(expected.keys() & actual.keys()):
        if expected[name] != actual[name]:
            diff = difflib.unified_diff(
                expected[name].decode(errors="replace").splitlines(keepends=True),
                actual[name].decode(errors="replace").splitlines(keepends=True),
                f"expected/{name}",
                f"actual/{name}",
            )
            out.append(f"differs: {name}\n" + "".join(list(diff)[:60]))
    return out
