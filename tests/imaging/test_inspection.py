"""inspect_image: what it accepts, what it refuses and why, and that a bomb stays cheap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mcsv.v1 import common_pb2

from internal.imaging import ImageInfo, ImageRejected, inspect_image
from tests.imaging import samples

ROOT = Path(__file__).resolve().parents[2]
PNG = common_pb2.IMAGE_FORMAT_PNG
JPEG = common_pb2.IMAGE_FORMAT_JPEG


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (samples.png((640, 480)), ImageInfo(PNG, 640, 480)),
        (samples.png((31, 7), "RGBA"), ImageInfo(PNG, 31, 7)),
        (samples.png((50, 60), "L"), ImageInfo(PNG, 50, 60)),
        (samples.png((50, 60), "LA"), ImageInfo(PNG, 50, 60)),
        (samples.png((70, 20), "P"), ImageInfo(PNG, 70, 20)),
        (samples.png((33, 44), "I;16"), ImageInfo(PNG, 33, 44)),
        (samples.png((1, 1)), ImageInfo(PNG, 1, 1)),
        (samples.jpeg((800, 600)), ImageInfo(JPEG, 800, 600)),
        (samples.jpeg((45, 91), "L"), ImageInfo(JPEG, 45, 91)),
        (samples.jpeg((64, 32), "CMYK"), ImageInfo(JPEG, 64, 32)),
        (samples.jpeg((64, 32), progressive=True), ImageInfo(JPEG, 64, 32)),
        (samples.jpeg_with_exif((120, 80)), ImageInfo(JPEG, 120, 80)),
    ],
    ids=[
        "png",
        "png-rgba",
        "png-grey",
        "png-grey-alpha",
        "png-palette",
        "png-16bit",
        "png-1x1",
        "jpeg",
        "jpeg-grey",
        "jpeg-cmyk",
        "jpeg-progressive",
        "jpeg-exif",
    ],
)
def test_recognises_png_and_jpeg_and_their_size(data: bytes, expected: ImageInfo) -> None:
    assert inspect_image(data) == expected


def test_reads_the_exif_orientation_of_a_jpeg() -> None:
    info = inspect_image(samples.jpeg_with_exif((200, 100), orientation=6))

    assert (info.width, info.height, info.orientation) == (200, 100, 6)
    assert info.oriented_size == (100, 200)


def _rejection(data: bytes, **limits: int) -> str:
    with pytest.raises(ImageRejected) as caught:
        inspect_image(data, **limits)
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (samples.encode(samples.picture((20, 20)), "GIF"), "a GIF image; only PNG and JPEG"),
        (samples.encode(samples.picture((20, 20)), "BMP"), "a BMP image; only PNG and JPEG"),
        (samples.encode(samples.picture((20, 20)), "TIFF"), "a TIFF image; only PNG and JPEG"),
        (b"hello, this is plain text\n" * 10, "not an image we recognise"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "a SVG/XML image"),
    ],
    ids=["gif", "bmp", "tiff", "text", "svg"],
)
def test_refuses_other_formats_naming_them(data: bytes, words: str) -> None:
    reason = _rejection(data)
    assert reason.startswith("unsupported image format")
    assert words in reason


def test_refuses_an_empty_input() -> None:
    assert _rejection(b"") == "the image is empty (0 bytes)"


@pytest.mark.parametrize(
    "data",
    [
        samples.png((300, 200))[:400],  # cut inside the pixel data
        samples.png((300, 200))[:-12],  # IEND missing
        samples.png((300, 200))[:30],  # cut inside the header
        samples.jpeg((300, 200))[:900],
        samples.jpeg((300, 200))[:-2],  # end-of-image marker missing
    ],
    ids=["png-half", "png-no-iend", "png-header-only", "jpeg-half", "jpeg-no-eoi"],
)
def test_refuses_a_truncated_image(data: bytes) -> None:
    assert _rejection(data).startswith("the image is corrupt")


def test_refuses_a_png_with_a_damaged_chunk() -> None:
    damaged = bytearray(samples.png((300, 200)))
    damaged[len(damaged) // 2] ^= 0xFF

    assert "checksum" in _rejection(bytes(damaged))


def test_refuses_an_image_over_the_byte_limit() -> None:
    data = samples.png((100, 100))

    reason = _rejection(data, max_bytes=len(data) - 1)

    assert reason == f"the image is {len(data)} bytes, more than the limit of {len(data) - 1}"


def test_refuses_an_image_over_the_pixel_limit() -> None:
    reason = _rejection(samples.png((100, 60)), max_pixels=5_000)

    assert reason == (
        "the image is 100x60 = 6000 pixels, more than the limit of 5000 "
        "(possible decompression bomb)"
    )


def test_refuses_a_side_longer_than_the_policy_allows() -> None:
    assert _rejection(samples.png((16_001, 3), "L")) == (
        "the image is 16001x3; sides longer than 16000 pixels are not accepted"
    )
    assert inspect_image(samples.png((16_000, 3), "L")) == ImageInfo(PNG, 16_000, 3)


# Runs in a fresh interpreter so that its peak memory says what inspect_image used.
_MEASURE = """
import json, re, sys
from internal.imaging import ImageRejected, inspect_image
results = []
for path in sys.argv[1:]:
    try:
        inspect_image(open(path, "rb").read())
        results.append("accepted")
    except ImageRejected as exc:
        results.append(exc.reason)
# VmHWM is this process's peak resident memory (getrusage's would include the parent's).
status = open("/proc/self/status").read()
peak_kib = int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
print(json.dumps({"reasons": results, "peak_mib": peak_kib / 1024}))
"""


def test_refuses_decompression_bombs_without_inflating_them(tmp_path: Path) -> None:
    # 8000x8000 = 64 Mpx: over our 40 Mpx limit, under Pillow's own; 64 MB once decoded.
    real = tmp_path / "real-bomb.png"
    real.write_bytes(samples.real_bomb(8000, 8000))
    # 100000x100000 = 10 Gpx declared in the header; Pillow itself refuses to open it.
    declared = tmp_path / "declared-bomb.png"
    declared.write_bytes(samples.declared_bomb(100_000, 100_000))
    assert real.stat().st_size < 1_000_000

    completed = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(real), str(declared)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    measured = json.loads(completed.stdout)

    real_reason, declared_reason = measured["reasons"]
    assert real_reason == (
        "the image is 8000x8000 = 64000000 pixels, more than the limit of 40000000 "
        "(possible decompression bomb)"
    )
    assert declared_reason.startswith("the image has too many pixels (decompression bomb)")
    # Python, Pillow and protobuf take about 25 MiB; decoding the real bomb would add 64.
    assert measured["peak_mib"] < 60
