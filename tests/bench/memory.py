"""P5: user_svc's memory under 100 concurrent 10 MB ConvertImage uploads (embedded defaults).

user_svc's resident set (/proc/<pid>/status VmRSS) is read once the system is up and warm
(baseline); its peak (VmHWM, reset before the uploads when the kernel lets us) is read after
all uploads are answered; and its RSS again once every conversion they started has ended
(after). Every upload must be accepted.

The image is a real 10 MB PNG that converts quickly: a 64x64 picture carrying a 10 MB private
ancillary chunk (which PNG readers skip), so that the 100 conversions that follow do not load
the machine for minutes. user_svc stores, serves and forgets the same 10 MB either way."""

from __future__ import annotations

import asyncio
import io
import os
import struct
import tempfile
import time
import zlib
from pathlib import Path

from mcsv.twirp import TwirpError
from mcsv.v1 import common_pb2, user_pb2
from mcsv.v1.user_twirp import AsyncUserServiceClient
from PIL import Image

from internal import config
from internal.auth import OPERATOR
from internal.peers import AsyncPeers
from tests.bench.table import Row
from tests.e2e.system import whole_system

MB = 1024 * 1024
UPLOADS = 100
GROWTH_LIMIT_MB = 100.0


def ten_megabyte_png(size: int = 10 * MB) -> bytes:
    """A valid PNG of `size` bytes: a small picture and a private chunk ('mcSv') of filler."""
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 80, 40)).save(out, format="PNG")
    png = out.getvalue()
    end = png.rindex(b"IEND") - 4  # the IEND chunk: length, type, CRC
    filler = os.urandom(size - len(png) - 12)
    chunk = struct.pack(">I", len(filler)) + b"mcSv" + filler
    chunk += struct.pack(">I", zlib.crc32(b"mcSv" + filler))
    return png[:end] + chunk + png[end:]


def _status(pid: int, field: str) -> float:
    """A /proc/<pid>/status field in MB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def _reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        return False
    return True


async def _upload_all(settings: config.Settings, pid: int, image: bytes, quick: bool
                      ) -> tuple[int, list[str], float, float, float]:  # fmt: skip
    """(accepted, refusals, baseline MB, peak MB, after MB)."""
    uploads = 10 if quick else UPLOADS
    async with AsyncPeers(settings, identity=OPERATOR) as peers:
        users = peers.client(AsyncUserServiceClient, timeout=120)
        created = await users.create_user(
            user_pb2.CreateUserRequest(name="Bench", email=f"bench{time.time_ns()}@example.com")
        )
        headers = {"Authorization": f"Bearer {created.api_token}"}

        def request(index: int) -> user_pb2.ConvertImageRequest:
            return user_pb2.ConvertImageRequest(
                user_id=created.user.id, filename=f"big-{index}.png", image_data=image,
                options=common_pb2.ConversionOptions(quality=common_pb2.PDF_QUALITY_LOW),
            )  # fmt: skip

        # Warm: one upload and its conversion, so that the baseline has every path loaded.
        first = await users.convert_image(request(-1), headers=headers)
        await _wait_finished(users, headers, [first.conversion.id], 60)
        await asyncio.sleep(1)
        baseline = _status(pid, "VmRSS")
        _reset_peak(pid)

        async def upload(index: int) -> str:
            answer = await users.convert_image(request(index), headers=headers)
            return answer.conversion.id

        results = await asyncio.gather(*(upload(i) for i in range(uploads)),
                                       return_exceptions=True)  # fmt: skip
        peak = _status(pid, "VmHWM")
        accepted = [r for r in results if isinstance(r, str)]
        refused = [f"{r}" for r in results if isinstance(r, TwirpError | Exception)]
        await _wait_finished(users, headers, accepted, 300)
        await asyncio.sleep(2)
        after = _status(pid, "VmRSS")
    return len(accepted), refused, baseline, peak, after


async def _wait_finished(
    users: AsyncUserServiceClient, headers: dict[str, str], ids: list[str], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    left = set(ids)
    while left and time.monotonic() < deadline:
        for conversion_id in list(left):
            answer = await users.get_conversion(
                user_pb2.GetConversionRequest(id=conversion_id), headers=headers
            )
            if answer.conversion.state != user_pb2.CONVERSION_STATE_PENDING:
                left.discard(conversion_id)
        if left:
            await asyncio.sleep(0.5)


def measure(quick: bool) -> list[Row]:
    image = ten_megabyte_png()
    uploads = 10 if quick else UPLOADS
    with (
        tempfile.TemporaryDirectory(prefix="mcsv-bench-memory-") as tmp,
        whole_system(Path(tmp)) as system,
    ):
        process = system.children["user_svc"].process
        assert process is not None
        accepted, refused, baseline, peak, after = asyncio.run(
            _upload_all(system.settings, process.pid, image, quick)
        )
    growth = peak - baseline
    return [
        Row(
            goal="P5",
            figure=f"{uploads} concurrent 10 MB ConvertImage uploads accepted",
            value=accepted, unit="", target=f"all {uploads}", met=accepted == uploads,
            peer=f"refused: {refused[0][:60]}" if refused else "",
        ),
        Row(
            goal="P5",
            figure="user_svc RSS growth at peak (VmHWM - baseline RSS)",
            value=growth, unit="MB", target=f"<= {GROWTH_LIMIT_MB:.0f} MB",
            met=growth <= GROWTH_LIMIT_MB, peer="baseline RSS", peer_value=baseline,
        ),
        Row(
            goal="P5",
            figure="user_svc RSS after (all conversions ended)",
            value=after, unit="MB", target="near baseline (<= baseline + 25 MB)",
            met=after <= baseline + 25, peer="baseline RSS", peer_value=baseline,
            ratio=after / baseline,
        ),
    ]  # fmt: skip
