"""Installs mcsv's hardened ImageMagick security policy over the system one. Run it as root:

    python -m internal.imaging.install_policy [--binary convert] [--policy-path PATH]

1. When `convert -version` does not show ImageMagick, installs it with apt-get.
2. Backs up the system policy once, beside it, as policy.xml.mcsv-backup.
3. Writes internal/imaging/policy.xml in its place. (Debian's policy forbids PDF, and a policy
   found through MAGICK_CONFIGURE_PATH cannot loosen the system one.)
4. Verifies that a PNG converts to PDF and that an unneeded coder (SVG) is refused.

Exit status: 0 done (or nothing to do), 1 root is needed, 2 something else failed. Note that a
later `apt-get upgrade` of imagemagick-6-common asks whether to keep this modified policy: keep it.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from internal.imaging.errors import ImageMagickUnavailable
from internal.imaging.magick import ImageMagick

POLICY_SOURCE = Path(__file__).with_name("policy.xml")
BACKUP_SUFFIX = ".mcsv-backup"
DEFAULT_POLICY_PATH = Path("/etc/ImageMagick-6/policy.xml")
_TINY_SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="2" height="2"/>'

Say = Callable[[str], None]


def _as_root() -> str:
    """This very command, prefixed with sudo."""
    return shlex.join(
        ["sudo", sys.executable, "-m", "internal.imaging.install_policy", *sys.argv[1:]]
    )


class NeedsRoot(Exception):
    """Something has to be installed or written and we are not root."""


class InstallFailed(Exception):
    """Installing or verifying failed for another reason."""


def imagemagick_version(binary: str) -> str | None:
    """The first line of `binary -version` when it is ImageMagick, else None."""
    try:
        completed = subprocess.run([binary, "-version"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = completed.stdout.decode(errors="replace").splitlines()
    if lines and lines[0].startswith("Version: ImageMagick"):
        return lines[0]
    return None


def ensure_imagemagick(binary: str, say: Say) -> None:
    version = imagemagick_version(binary)
    if version is not None:
        say(f"ImageMagick is installed: {version}")
        return
    if os.geteuid() != 0:
        raise NeedsRoot(
            f"`{binary} -version` does not show ImageMagick, so ImageMagick has to be installed: "
            f"run `{_as_root()}`, or `apt-get install imagemagick` as root, then this again"
        )
    if shutil.which("apt-get") is None:
        raise InstallFailed("ImageMagick is missing and there is no apt-get: install ImageMagick 6")
    say("ImageMagick is not installed: installing it with apt-get")
    for argv in (
        ["apt-get", "update"],
        ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "imagemagick"],
    ):
        if subprocess.run(argv).returncode != 0:
            raise InstallFailed(f"`{' '.join(argv)}` failed")
    version = imagemagick_version(binary)
    if version is None:
        raise InstallFailed(f"installed imagemagick, but `{binary} -version` still is not it")
    say(f"installed {version}")


def active_policy_path(binary: str) -> Path:
    """The system policy file ImageMagick reports in `-list policy`, else the Debian default."""
    try:
        completed = subprocess.run([binary, "-list", "policy"], capture_output=True, timeout=30)
        listing = completed.stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        listing = ""
    for found in re.findall(r"^Path: (/\S+)$", listing, flags=re.MULTILINE):
        if Path(found).is_file():
            return Path(found)
    return DEFAULT_POLICY_PATH


def install_policy_file(path: Path, say: Say) -> None:
    """Backs `path` up once, then replaces it with our policy, atomically."""
    ours = POLICY_SOURCE.read_bytes()
    current = path.read_bytes() if path.exists() else None
    if current == ours:
        say(f"mcsv's policy is already installed at {path}")
        return
    if os.geteuid() != 0:
        raise NeedsRoot(
            f"{path} is not mcsv's ImageMagick policy; to install it run `{_as_root()}`"
        )
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    if backup.exists():
        say(f"keeping the earlier backup {backup}")
    elif current is not None:
        shutil.copy2(path, backup)
        say(f"backed up the original policy to {backup}")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.mcsv-new")
    staging.write_bytes(ours)
    staging.chmod(0o644)
    os.replace(staging, path)
    say(f"installed mcsv's policy at {path}")


def verify(binary: str, say: Say) -> None:
    try:
        ImageMagick(binary).check()
    except ImageMagickUnavailable as exc:
        raise InstallFailed(f"ImageMagick still cannot convert PNG to PDF: {exc}") from exc
    refused = subprocess.run(
        [binary, "svg:-", "png:-"], input=_TINY_SVG, capture_output=True, timeout=30
    )
    if refused.returncode == 0 or b"security policy" not in refused.stderr:
        raise InstallFailed(
            "ImageMagick still reads SVG, so the policy in effect is not mcsv's; "
            f"see which files `{binary} -list policy` loads"
        )
    say("verified: PNG converts to PDF, and SVG is refused by the policy")


def install(binary: str, policy_path: Path | None, say: Say) -> None:
    ensure_imagemagick(binary, say)
    install_policy_file(policy_path or active_policy_path(binary), say)
    verify(binary, say)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m internal.imaging.install_policy",
        description="Install ImageMagick and mcsv's hardened ImageMagick policy (as root).",
    )
    parser.add_argument("--binary", default="convert", help="ImageMagick's convert command")
    parser.add_argument(
        "--policy-path",
        type=Path,
        help="where to install the policy (default: the system policy ImageMagick reports)",
    )
    args = parser.parse_args(argv)
    try:
        install(args.binary, args.policy_path, say=print)
    except NeedsRoot as exc:
        print(f"install_policy: {exc}", file=sys.stderr)
        return 1
    except InstallFailed as exc:
        print(f"install_policy: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
