"""mcsv's ImageMagick policy as installed on this machine, and its installer."""

from __future__ import annotations

import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcsv.v1 import common_pb2

from internal.imaging import ImageMagick, inspect_image
from internal.imaging.install_policy import BACKUP_SUFFIX, POLICY_SOURCE, active_policy_path
from tests.imaging import samples

ROOT = Path(__file__).resolve().parents[2]
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8"/></svg>'
TINY_PNG = samples.png((8, 8))

REFUSED = [
    pytest.param(["svg:-", "png:-"], SVG, id="read-svg"),
    pytest.param(["mvg:-", "png:-"], b"viewbox 0 0 8 8 rectangle 0,0 8,8", id="read-mvg"),
    pytest.param(["text:@/etc/passwd", "png:-"], b"", id="read-text-indirect"),
    pytest.param(["text:/etc/passwd", "png:-"], b"", id="read-text"),
    pytest.param(["@/etc/passwd", "png:-"], b"", id="indirect-path"),
    pytest.param(["xc:red", "png:-"], b"", id="read-xc"),
    pytest.param(["label:hello", "png:-"], b"", id="read-label"),
    pytest.param(["http://127.0.0.1:9/a.png", "png:-"], b"", id="read-url"),
    pytest.param(["gif:-", "png:-"], samples.encode(samples.picture((8, 8)), "GIF"), id="read-gif"),
    pytest.param(["png:-", "svg:-"], TINY_PNG, id="write-svg"),
    pytest.param(["png:-", "ps:-"], TINY_PNG, id="write-ps"),
    pytest.param(["png:-", "gif:-"], TINY_PNG, id="write-gif"),
    pytest.param(["png:-", "miff:-"], TINY_PNG, id="write-miff"),
]


@pytest.mark.parametrize(("arguments", "stdin"), REFUSED)
def test_the_installed_policy_refuses_what_we_do_not_need(
    magick: ImageMagick, tmp_path: Path, arguments: list[str], stdin: bytes
) -> None:
    completed = subprocess.run(
        [magick.binary, *arguments], input=stdin, capture_output=True, cwd=tmp_path, timeout=30
    )

    assert completed.returncode != 0
    assert b"not allowed by the security policy" in completed.stderr
    assert completed.stdout == b""
    assert list(tmp_path.iterdir()) == []  # nothing written under another name either


def test_the_installed_policy_refuses_a_script_that_writes_files(
    magick: ImageMagick, tmp_path: Path
) -> None:
    target = tmp_path / "written-by-msl.png"
    script = (
        '<?xml version="1.0"?><image><read filename="png:-"/>'
        f'<write filename="png:{target}"/></image>'
    )

    completed = subprocess.run(
        [magick.binary, "msl:-", "png:-"], input=script.encode(), capture_output=True, timeout=30
    )

    assert b"not allowed by the security policy `MSL'" in completed.stderr
    assert not target.exists()


def test_reading_a_pdf_is_refused_although_writing_one_works(magick: ImageMagick) -> None:
    pdf = magick.to_pdf(TINY_PNG, inspect_image(TINY_PNG), common_pb2.ConversionOptions()).pdf

    completed = subprocess.run(
        [magick.binary, "pdf:-", "png:-"], input=pdf, capture_output=True, timeout=30
    )

    assert completed.returncode != 0
    assert b"not allowed by the security policy `PDF'" in completed.stderr


def test_the_system_policy_is_ours(magick: ImageMagick) -> None:
    system_policy = active_policy_path(magick.binary)

    assert system_policy.read_bytes() == POLICY_SOURCE.read_bytes()
    assert system_policy.with_name(system_policy.name + BACKUP_SUFFIX).is_file()


def install_policy(*arguments: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the installer as a user would, as root or (with setpriv) as `user`."""
    command = [sys.executable, "-m", "internal.imaging.install_policy", *arguments]
    if user is not None:
        setpriv = shutil.which("setpriv")
        assert setpriv is not None, "setpriv (util-linux) is needed to run as another user"
        account = pwd.getpwnam(user)
        command = [
            setpriv,
            f"--reuid={account.pw_uid}",
            f"--regid={account.pw_gid}",
            "--clear-groups",
            *command,
        ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_the_installer_has_nothing_to_do_on_this_machine(magick: ImageMagick) -> None:
    completed = install_policy()

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [
        f"ImageMagick is installed: {magick.check()}",
        f"mcsv's policy is already installed at {active_policy_path(magick.binary)}",
        "verified: PNG converts to PDF, and SVG is refused by the policy",
    ]


def test_the_installer_backs_up_the_original_once(magick: ImageMagick, tmp_path: Path) -> None:
    policy = tmp_path / "policy.xml"
    backup = tmp_path / "policy.xml.mcsv-backup"
    policy.write_text("<policymap><!-- the distribution's --></policymap>\n")

    first = install_policy("--policy-path", str(policy))
    policy.write_text("<policymap><!-- a package upgrade's --></policymap>\n")
    second = install_policy("--policy-path", str(policy))
    third = install_policy("--policy-path", str(policy))

    assert first.returncode == second.returncode == third.returncode == 0
    assert f"backed up the original policy to {backup}" in first.stdout
    assert f"installed mcsv's policy at {policy}" in first.stdout
    assert f"keeping the earlier backup {backup}" in second.stdout
    assert f"installed mcsv's policy at {policy}" in second.stdout
    assert f"mcsv's policy is already installed at {policy}" in third.stdout
    assert backup.read_text() == "<policymap><!-- the distribution's --></policymap>\n"
    assert policy.read_bytes() == POLICY_SOURCE.read_bytes()
    assert policy.stat().st_mode & 0o777 == 0o644


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A root-owned directory that other users can read (pytest's tmp_path is private)."""
    path = Path(tempfile.mkdtemp(prefix="mcsv-policy-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_the_installer_needs_root_to_replace_a_policy(shared_dir: Path) -> None:
    policy = shared_dir / "policy.xml"
    policy.write_text("<policymap/>\n")
    policy.chmod(0o644)

    completed = install_policy("--policy-path", str(policy), user="nobody")

    assert completed.returncode == 1
    assert f"{policy} is not mcsv's ImageMagick policy; to install it run `sudo " in (
        completed.stderr
    )
    assert f"-m internal.imaging.install_policy --policy-path {policy}`" in completed.stderr
    assert policy.read_text() == "<policymap/>\n"
    assert sorted(shared_dir.iterdir()) == [policy]


def test_the_installer_needs_root_to_install_imagemagick() -> None:
    completed = install_policy("--binary", "/bin/echo", user="nobody")

    assert completed.returncode == 1
    assert (
        "`/bin/echo -version` does not show ImageMagick, so ImageMagick has to be installed"
        in completed.stderr
    )
    assert "`apt-get install imagemagick` as root" in completed.stderr
