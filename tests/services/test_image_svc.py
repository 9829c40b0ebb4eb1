"""image_svc as a real process converting through presigned URLs served by user_svc (the file
storage backend) with the machine's ImageMagick: one conversion's time is measured once, so
its answer, its metric and its log line give the same figure; a corrupt or truncated image is
refused as bad input, whichever check (Pillow's or ImageMagick's) catches it."""

from __future__ import annotations

import json
import struct
import sys
import zlib
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import common_pb2, image_pb2
from mcsv.v1.image_twirp import ImageServiceClient
from prometheus_client.parser import text_string_to_metric_families

from internal import config, storage
from internal.peers import SyncPeers
from tests.e2e.images import make_image
from tests.support.servers import ROOT, free_port, serving


def conversion_seconds_observed(metrics_text: str, quality: str) -> float:
    """The sum of mcsv_conversion_duration_seconds for succeeded conversions of a quality."""
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            labels = {"quality": quality, "outcome": "succeeded"}
            if sample.name == "mcsv_conversion_duration_seconds_sum" and sample.labels == labels:
                return sample.value
    raise AssertionError(f"no succeeded {quality} conversion observed")


def logged_milliseconds(log: Path, conversion_id: str) -> float:
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            message = json.loads(line)["message"]
            if message.startswith(f"conversion {conversion_id}:"):
                return float(message.rsplit(" in ", 1)[1].removesuffix(" ms"))
    raise AssertionError(f"no log line for conversion {conversion_id}")


def test_one_conversion_time_in_the_answer_the_metric_and_the_log(tmp_path: Path) -> None:
    env = {
        "MCSV_DATA_DIR": str(tmp_path),
        "USER_SVC_URL": f"http://127.0.0.1:{free_port()}",
        "IMAGE_SVC_URL": f"http://127.0.0.1:{free_port()}",
        "MCSV_LOG_FORMAT": "json",
    }
    settings = config.load(env)
    store = storage.open_storage(
        settings.storage_url, public_url=settings.storage_public_url, secret=settings.storage_secret
    )
    store.put("uploads/c-1/photo.png", make_image("png", 640, 480), "image/png")
    ttl = timedelta(minutes=5)

    def ready(answer: httpx.Response) -> bool:
        return answer.status_code == 200

    image_svc_log = ROOT / ".pytest_cache" / f"image_svc-{settings.bind('image_svc')[1]}.log"
    with (
        serving(f"user_svc-{settings.bind('user_svc')[1]}",
                [sys.executable, str(ROOT / "cmd" / "user_svc.py")],
                settings.url("user_svc") + "/ready", env=env, ready=ready),
        serving(image_svc_log.stem, [sys.executable, str(ROOT / "cmd" / "image_svc.py")],
                settings.url("image_svc") + "/ready", env=env, ready=ready),
        SyncPeers(settings, identity="job_svc") as peers,
    ):  # fmt: skip
        converted = peers.client(ImageServiceClient).convert_to_pdf(
            image_pb2.ConvertToPdfRequest(
                conversion_id="c-1",
                source_url=store.presign_get("uploads/c-1/photo.png", ttl),
                pdf_upload_url=store.presign_put("pdfs/c-1.pdf", ttl, "application/pdf"),
                options=common_pb2.ConversionOptions(quality=common_pb2.PDF_QUALITY_MEDIUM),
            )
        )
        metrics_text = httpx.get(settings.url("image_svc") + "/metrics").text
        answered = converted.result.duration.ToNanoseconds() / 1e9
        assert answered > 0 and store.exists("pdfs/c-1.pdf")
        assert abs(conversion_seconds_observed(metrics_text, "medium") - answered) < 1e-8
        assert f"{logged_milliseconds(image_svc_log, 'c-1'):.0f}" == f"{answered * 1000:.0f}"


def with_broken_pixel_stream(png: bytes) -> bytes:
    """The PNG with bytes of its compressed pixels flipped and every chunk's CRC made right
    again: its header and chunks pass, only decoding its pixels fails."""
    out, at = bytearray(png[:8]), 8
    while at < len(png):
        (size,) = struct.unpack(">I", png[at : at + 4])
        kind, data = png[at + 4 : at + 8], bytearray(png[at + 8 : at + 8 + size])
        if kind == b"IDAT":
            for index in range(len(data) // 3, len(data) // 3 + 40):
                data[index] ^= 0x5A
        out += struct.pack(">I", len(data)) + kind + data
        out += struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        at += 12 + size
    return bytes(out)


@pytest.mark.parametrize(
    "image",
    [
        with_broken_pixel_stream(make_image("png", 640, 480)),
        make_image("png", 640, 480)[:-12],  # IEND missing
        make_image("jpeg", 640, 480)[:-2],  # end-of-image marker missing
        make_image("jpeg", 640, 480)[:4000],
    ],
    ids=["png-broken-pixels", "png-truncated", "jpeg-no-eoi", "jpeg-half"],
)
def test_a_corrupt_or_truncated_image_is_refused_as_bad_input(tmp_path: Path, image: bytes) -> None:
    env = {
        "MCSV_DATA_DIR": str(tmp_path),
        "USER_SVC_URL": f"http://127.0.0.1:{free_port()}",
        "IMAGE_SVC_URL": f"http://127.0.0.1:{free_port()}",
    }
    settings = config.load(env)
    store = storage.open_storage(
        settings.storage_url, public_url=settings.storage_public_url, secret=settings.storage_secret
    )
    store.put("uploads/c-2/broken", image, "application/octet-stream")
    ttl = timedelta(minutes=5)

    def ready(answer: httpx.Response) -> bool:
        return answer.status_code == 200

    with (
        serving(f"user_svc-{settings.bind('user_svc')[1]}",
                [sys.executable, str(ROOT / "cmd" / "user_svc.py")],
                settings.url("user_svc") + "/ready", env=env, ready=ready),
        serving(f"image_svc-{settings.bind('image_svc')[1]}",
                [sys.executable, str(ROOT / "cmd" / "image_svc.py")],
                settings.url("image_svc") + "/ready", env=env, ready=ready),
        SyncPeers(settings, identity="job_svc") as peers,
        pytest.raises(TwirpError) as refused,
    ):  # fmt: skip
        peers.client(ImageServiceClient).convert_to_pdf(
            image_pb2.ConvertToPdfRequest(
                conversion_id="c-2",
                source_url=store.presign_get("uploads/c-2/broken", ttl),
                pdf_upload_url=store.presign_put("pdfs/c-2.pdf", ttl, "application/pdf"),
            )
        )
    assert refused.value.code == ErrorCode.INVALID_ARGUMENT
    assert "refused" in refused.value.msg and "corrupt" in refused.value.msg
    assert not store.exists("pdfs/c-2.pdf")
