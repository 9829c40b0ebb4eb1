"""ImageMagick.check(): the start-up check says precisely what is wrong and what to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mcsv.v1 import common_pb2

from internal.imaging import ImageMagick, ImageMagickUnavailable, inspect_image
from internal.imaging.install_policy import active_policy_path
from tests.imaging import samples

INSTALL = "install imagemagick (apt-get install imagemagick)"
RUN_INSTALLER = "run `python -m internal.imaging.install_policy` (as root)"


def test_passes_under_our_policy_and_returns_the_version(magick: ImageMagick) -> None:
    assert magick.check().startswith("Version: ImageMagick 6.")


@pytest.mark.parametrize("binary", ["mcsv-no-such-convert", "/nonexistent/bin/convert"])
def test_a_missing_binary_says_to_install_imagemagick(binary: str) -> None:
    with pytest.raises(ImageMagickUnavailable) as caught:
        ImageMagick(binary).check()

    assert str(caught.value) == f"ImageMagick's `{binary}` was not found: {INSTALL}"


def test_converting_with_a_missing_binary_says_to_install_imagemagick() -> None:
    data = samples.png((4, 4))

    with pytest.raises(ImageMagickUnavailable, match=r"cannot run .* install imagemagick"):
        ImageMagick("/nonexistent/bin/convert").to_pdf(
            data, inspect_image(data), common_pb2.ConversionOptions()
        )


def test_a_binary_that_is_not_imagemagick_says_to_install_it() -> None:
    with pytest.raises(ImageMagickUnavailable) as caught:
        ImageMagick("/bin/true").check()

    assert str(caught.value) == (
        f"`/bin/true` is not ImageMagick (`-version` printed 'nothing'): {INSTALL}"
    )


def _convert_under_policy(tmp_path: Path, policy: str) -> str:
    """A `convert` that runs the real one with `policy` bind-mounted over the system policy in
    a private mount namespace, as on a machine where the installer has not run."""
    policy_file = tmp_path / "policy.xml"
    policy_file.write_text(policy)
    real = shutil.which("convert")
    assert real is not None
    wrapper = tmp_path / "convert-with-other-policy"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'exec unshare --mount sh -c \'mount --bind "$0" {active_policy_path(real)} && '
        f'exec {real} "$@"\' {policy_file} "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def test_debians_pdf_ban_says_to_run_the_installer(tmp_path: Path) -> None:
    # The line in Debian's stock policy that forbids PDF.
    binary = _convert_under_policy(
        tmp_path, '<policymap><policy domain="coder" rights="none" pattern="PDF" /></policymap>'
    )

    with pytest.raises(ImageMagickUnavailable) as caught:
        ImageMagick(binary).check()

    message = str(caught.value)
    assert message.startswith(f"the ImageMagick security policy forbids PDF: {RUN_INSTALLER} (")
    assert "not allowed by the security policy `PDF'" in message


def test_another_policy_ban_also_says_to_run_the_installer(tmp_path: Path) -> None:
    binary = _convert_under_policy(
        tmp_path, '<policymap><policy domain="coder" rights="none" pattern="PNG" /></policymap>'
    )

    with pytest.raises(ImageMagickUnavailable) as caught:
        ImageMagick(binary).check()

    assert str(caught.value).startswith(
        f"the ImageMagick security policy forbids converting PNG to PDF: {RUN_INSTALLER} ("
    )
