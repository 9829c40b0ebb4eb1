"""ImageMagick.to_pdf on the real `convert`: presets, resize, orientation, metadata, failures."""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path
from typing import TypeAlias

import pytest
from mcsv.v1 import common_pb2
from pypdf import PageObject, PdfReader
from pypdf.generic import DictionaryObject, PdfObject

from internal.imaging import ConversionFailed, ImageInfo, ImageMagick, PdfResult, inspect_image
from tests.imaging import samples

Options = common_pb2.ConversionOptions
Quality: TypeAlias = common_pb2.PdfQuality
# The seeds' presets: PdfQuality -> (-quality, -density).
PRESETS: dict[Quality, tuple[int, int]] = {
    common_pb2.PDF_QUALITY_UNSPECIFIED: (85, 100),
    common_pb2.PDF_QUALITY_LOW: (60, 72),
    common_pb2.PDF_QUALITY_MEDIUM: (85, 100),
    common_pb2.PDF_QUALITY_HIGH: (95, 200),
    common_pb2.PDF_QUALITY_LOSSLESS: (100, 300),
}


def only_page(pdf: bytes) -> PageObject:
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf), strict=True)
    assert len(reader.pages) == 1
    return reader.pages[0]


def _dictionary(value: object) -> DictionaryObject:
    resolved = value.get_object() if isinstance(value, PdfObject) else value
    assert isinstance(resolved, DictionaryObject)
    return resolved


def embedded_image_size(page: PageObject) -> tuple[int, int]:
    """The size the PDF declares for its one image, which must also decode to that size."""
    xobjects = _dictionary(_dictionary(page["/Resources"])["/XObject"])
    (image,) = [_dictionary(xobject) for xobject in xobjects.values()]
    assert str(image["/Subtype"]) == "/Image"
    width, height = image["/Width"], image["/Height"]
    assert isinstance(width, int) and isinstance(height, int)
    (decoded,) = page.images
    assert decoded.image is not None and decoded.image.size == (width, height)
    return width, height


def assert_page_matches(result: PdfResult, density: int) -> None:
    """The PDF's one page is the image at `density` dpi, as the result says."""
    page = only_page(result.pdf)
    expected_width = result.output_width / density * 72
    expected_height = result.output_height / density * 72
    assert result.page_width_points == pytest.approx(expected_width)
    assert result.page_height_points == pytest.approx(expected_height)
    assert float(page.mediabox.width) == pytest.approx(expected_width, abs=0.01)
    assert float(page.mediabox.height) == pytest.approx(expected_height, abs=0.01)
    assert embedded_image_size(page) == (result.output_width, result.output_height)


def convert(
    magick: ImageMagick,
    data: bytes,
    *,
    quality: Quality = common_pb2.PDF_QUALITY_UNSPECIFIED,
    strip_metadata: bool = False,
    max_width: int = 0,
    max_height: int = 0,
) -> PdfResult:
    options = Options(
        quality=quality,
        strip_metadata=strip_metadata,
        max_width=max_width,
        max_height=max_height,
    )
    return magick.to_pdf(data, inspect_image(data), options)


@pytest.mark.parametrize("quality", list(PRESETS), ids=common_pb2.PdfQuality.Name)
@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_each_preset_gives_one_page_of_the_right_size(
    magick: ImageMagick, quality: Quality, kind: str
) -> None:
    data = samples.png((300, 200)) if kind == "png" else samples.jpeg((300, 200))
    _, density = PRESETS[quality]

    result = convert(magick, data, quality=quality)

    assert (result.output_width, result.output_height) == (300, 200)
    assert (result.page_width_points, result.page_height_points) == pytest.approx(
        (300 / density * 72, 200 / density * 72)
    )
    assert_page_matches(result, density)


def test_the_command_carries_the_preset_and_a_fixed_input_coder(magick: ImageMagick) -> None:
    for quality, (q, density) in PRESETS.items():
        for image_format, coder in (
            (common_pb2.IMAGE_FORMAT_PNG, "png:-"),
            (common_pb2.IMAGE_FORMAT_JPEG, "jpeg:-"),
        ):
            argv = magick.command(
                ImageInfo(image_format, 10, 10), Options(quality=quality), temp_dir="/tmp/x"
            )
            assert argv[argv.index("-quality") + 1] == str(q)
            assert argv[argv.index("-density") + 1] == str(density)
            assert coder in argv
            assert argv[-1] == "pdf:-"
            assert "-resize" not in argv
            assert "-strip" not in argv
    argv = magick.command(
        ImageInfo(common_pb2.IMAGE_FORMAT_PNG, 10, 10), Options(), temp_dir="/tmp/x"
    )
    limits = {argv[i + 1]: argv[i + 2] for i, arg in enumerate(argv) if arg == "-limit"}
    assert limits == {
        "memory": "256MiB",
        "map": "512MiB",
        "disk": "1GiB",
        "time": "30",
        "thread": "2",
    }


@pytest.mark.parametrize(
    ("size", "bounds", "expected"),
    [
        ((1000, 500), (400, 0), (400, 200)),
        ((1000, 500), (0, 100), (200, 100)),
        ((1000, 500), (400, 100), (200, 100)),  # the tighter bound wins
        ((1001, 333), (500, 500), (500, 166)),  # 166.33 rounds down
        ((333, 1001), (0, 500), (166, 500)),
        ((999, 601), (0, 300), (499, 300)),  # 498.67 rounds up
        ((300, 200), (600, 400), (300, 200)),  # never enlarged
        ((300, 200), (300, 0), (300, 200)),
        ((3000, 7), (100, 0), (100, 1)),  # at least one pixel
    ],
)
def test_resize_shrinks_only_and_keeps_the_aspect_ratio(
    magick: ImageMagick,
    size: tuple[int, int],
    bounds: tuple[int, int],
    expected: tuple[int, int],
) -> None:
    max_width, max_height = bounds

    result = convert(magick, samples.png(size), max_width=max_width, max_height=max_height)

    assert (result.output_width, result.output_height) == expected
    assert_page_matches(result, density=100)


def test_resize_applies_to_a_jpeg_at_high_quality(magick: ImageMagick) -> None:
    result = convert(
        magick, samples.jpeg((1600, 1200)), quality=common_pb2.PDF_QUALITY_HIGH, max_width=800
    )

    assert (result.output_width, result.output_height) == (800, 600)
    assert_page_matches(result, density=200)


@pytest.mark.parametrize(
    "data",
    [
        samples.png((120, 90), "RGBA"),
        samples.png((120, 90), "L"),
        samples.png((120, 90), "LA"),
        samples.png((120, 90), "P"),
        samples.png((120, 90), "I;16"),
        samples.png((120, 90), dpi=(300, 300)),  # pHYs must not change the page size
        samples.png((120, 90), interlace=True),
        samples.jpeg((120, 90), "L"),
        samples.jpeg((120, 90), "CMYK"),
        samples.jpeg((120, 90), dpi=(600, 600)),
        samples.jpeg((120, 90), progressive=True),
    ],
    ids=[
        "rgba",
        "grey",
        "grey-alpha",
        "palette",
        "16bit",
        "png-300dpi",
        "interlaced",
        "jpeg-grey",
        "jpeg-cmyk",
        "jpeg-600dpi",
        "jpeg-progressive",
    ],
)
def test_converts_every_kind_of_png_and_jpeg(magick: ImageMagick, data: bytes) -> None:
    result = convert(magick, data, quality=common_pb2.PDF_QUALITY_LOW)

    assert (result.output_width, result.output_height) == (120, 90)
    assert_page_matches(result, density=72)


def test_a_rotated_jpeg_is_turned_upright(magick: ImageMagick) -> None:
    data = samples.jpeg_with_exif((200, 100), orientation=6)

    result = convert(magick, data, quality=common_pb2.PDF_QUALITY_LOW, max_height=100)

    assert (result.output_width, result.output_height) == (50, 100)
    assert_page_matches(result, density=72)


def test_a_png_is_never_turned(magick: ImageMagick) -> None:
    image = samples.picture((200, 100))
    exif = image.getexif()
    exif[0x0112] = 6  # ImageMagick 6 ignores a PNG's eXIf orientation; we do too
    data = samples.encode(image, "PNG", exif=exif.tobytes())

    result = convert(magick, data, quality=common_pb2.PDF_QUALITY_LOW)

    assert inspect_image(data).orientation == 1
    assert (result.output_width, result.output_height) == (200, 100)
    assert_page_matches(result, density=72)


def test_strip_metadata_removes_the_exif_from_the_pdf(magick: ImageMagick) -> None:
    data = samples.jpeg_with_exif((160, 120))
    info = inspect_image(data)
    marker = samples.ARTIST_MARKER.encode()

    kept = magick.to_pdf(data, info, Options())
    stripped = magick.to_pdf(data, info, Options(strip_metadata=True))

    assert "-strip" in magick.command(info, Options(strip_metadata=True), temp_dir="/tmp/x")
    assert marker in kept.pdf  # the embedded JPEG carries the EXIF unless stripped
    assert marker not in stripped.pdf
    assert_page_matches(stripped, density=100)


def test_png_text_metadata_does_not_reach_the_pdf(magick: ImageMagick) -> None:
    result = convert(magick, samples.png_with_text((80, 60)), strip_metadata=True)

    assert samples.ARTIST_MARKER.encode() not in result.pdf
    assert_page_matches(result, density=100)


def test_a_timeout_kills_imagemagick_and_fails_the_conversion() -> None:
    data = samples.png((3000, 3000))
    impatient = ImageMagick(timeout=0.05)
    temp_dirs = Path(tempfile.gettempdir()).glob
    before = set(temp_dirs("mcsv-magick-*"))

    started = time.monotonic()
    with pytest.raises(ConversionFailed, match=r"did not finish within 0\.05 s and was killed"):
        impatient.to_pdf(
            data, inspect_image(data), Options(quality=common_pb2.PDF_QUALITY_LOSSLESS)
        )

    assert time.monotonic() - started < 2
    assert set(temp_dirs("mcsv-magick-*")) == before  # its pixel cache went with it


def test_the_declared_format_decides_the_decoder(magick: ImageMagick) -> None:
    jpeg_bytes = samples.jpeg((40, 30))
    claimed_png = ImageInfo(common_pb2.IMAGE_FORMAT_PNG, 40, 30)

    with pytest.raises(ConversionFailed, match=r"ImageMagick exited with status 1: .*PNG"):
        magick.to_pdf(jpeg_bytes, claimed_png, Options())


def test_the_policy_width_limit_holds_behind_inspection(magick: ImageMagick) -> None:
    # inspect_image refuses sides over 16000 pixels; past it, the policy's 16KP limit holds.
    data = samples.jpeg((17_000, 10), "L")
    info = inspect_image(data, max_side=20_000)

    with pytest.raises(ConversionFailed, match="width or height exceeds limit"):
        magick.to_pdf(data, info, Options())


def test_unknown_quality_and_format_are_programming_errors(magick: ImageMagick) -> None:
    data = samples.png((10, 10))
    with pytest.raises(ValueError, match="unknown PdfQuality value 99"):
        magick.to_pdf(data, inspect_image(data), Options(quality=99))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be PNG or JPEG"):
        magick.to_pdf(data, ImageInfo(common_pb2.IMAGE_FORMAT_UNSPECIFIED, 10, 10), Options())
