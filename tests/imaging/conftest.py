from __future__ import annotations

import pytest

from internal.imaging import ImageMagick


@pytest.fixture(scope="session")
def magick() -> ImageMagick:
    """The machine's ImageMagick, which must work under mcsv's policy (install_policy)."""
    imagemagick = ImageMagick(timeout=30)
    imagemagick.check()  # fails with the message that says what to run
    return imagemagick
