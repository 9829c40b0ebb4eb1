"""gen/mcsv is exactly what `buf generate` makes of proto/ with the repo's buf.gen.yaml today,
so that a stale gen/ (a proto, plugin or runtime change without `just gen`) fails `just test`."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.codegen.helpers import ROOT, buf, tree, tree_differences


def test_gen_matches_a_fresh_buf_generate(tmp_path: Path) -> None:
    template = (ROOT / "buf.gen.yaml").read_text()
    outs = re.findall(r"^\s*out:\s*(\S+)\s*$", template, re.M)
    # Generating in a copy of the workspace writes there only while every out is relative.
    assert outs, "buf.gen.yaml names no out directory"
    assert all(out == "gen" or out.startswith("gen/") for out in outs), outs

    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copy(ROOT / "buf.gen.yaml", tmp_path / "buf.gen.yaml")
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    result = buf("generate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    problems = tree_differences(
        expected=tree(tmp_path / "gen" / "mcsv"), actual=tree(ROOT / "gen" / "mcsv")
    )
    assert not problems, (
        "gen/mcsv is not what `buf generate` produces from proto/ (run `just gen`):\n"
        + "\n".join(problems)
    )
