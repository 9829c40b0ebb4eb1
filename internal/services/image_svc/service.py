"""image_svc: converts PNG/JPEG images to PDF. It pulls the image through a presigned URL,
only from the configured storage origin, checks it with Pillow (its header; a JPEG's pixels
too), converts it with ImageMagick under the project's policy, and stores the PDF through a
presigned PUT. Image bytes never travel in an RPC.

Fetching a presigned URL is the one HTTP call between services that does not go through a
generated client: it is a request to object storage, not an RPC (storage_http.py)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from urllib.parse import unquote, urlsplit

from google.protobuf.duration_pb2 import Duration
from mcsv.twirp import Context, ErrorCode, TwirpError
from mcsv.v1 import common_pb2, image_pb2

from internal import imaging, observability
from internal.observability import metrics
from internal.services.common.errors import invalid_argument, require, require_url
from internal.services.image_svc import storage_http
from internal.urls import character_problem

# An image up to this size has its header read (and a PNG's chunk checksums checked, ~1 µs
# per KB) on the event loop: a thread hop would cost more CPU than the read.
INLINE_HEADER_BYTES = 512 * 1024

log = logging.getLogger(__name__)


class ImageService:
    def __init__(
        self,
        magick: imaging.ImageMagick,
        http: storage_http.StorageHttp,
        storage_origin: str,
        max_image_bytes: int,
        max_image_pixels: int,
        concurrency: int = 2,
    ) -> None:
        self.magick = magick
        self.http = http
        self.storage_origin = storage_origin
        self.max_image_bytes = max_image_bytes
        self.max_image_pixels = max_image_pixels
        # ImageMagick is CPU-bound: more conversions at once than cores only slow each other
        # (and the rest of the system) down; the others wait here, their image in hand.
        self.converting = asyncio.Semaphore(concurrency)

    async def convert_to_pdf(
        self, ctx: Context, request: image_pb2.ConvertToPdfRequest
    ) -> image_pb2.ConvertToPdfResponse:
        observability.tag(conversion_id=request.conversion_id)
        preset = request.options.quality or common_pb2.PDF_QUALITY_MEDIUM
        quality = common_pb2.PdfQuality.Name(preset).removeprefix("PDF_QUALITY_").lower()
        started = time.monotonic()
        outcome = "failed"
        try:
            pdf, info, image = await self._convert(request)
            outcome = "succeeded"
        except TwirpError as exc:
            if exc.code in (ErrorCode.INVALID_ARGUMENT, ErrorCode.PERMISSION_DENIED):
                outcome = "rejected"  # bad input, not a failure of ours
            raise
        finally:
            # One measurement: the metric, the answer and the log line all give this figure.
            seconds = time.monotonic() - started
            metrics.child(metrics.CONVERSIONS, quality, outcome).inc()
            metrics.child(metrics.CONVERSION_DURATION, quality, outcome).observe(seconds)
        elapsed = Duration()
        elapsed.FromNanoseconds(int(seconds * 1e9))
        log.info(
            "conversion %s: %d bytes %dx%d -> PDF %d bytes in %.0f ms",
            request.conversion_id, len(image), info.width, info.height, len(pdf.pdf),
            seconds * 1000,
        )  # fmt: skip
        return image_pb2.ConvertToPdfResponse(
            result=common_pb2.ConversionResult(
                source_format=common_pb2.ImageFormat.Name(info.format),
                source_bytes=len(image),
                source_width=info.width,
                source_height=info.height,
                output_width=pdf.output_width,
                output_height=pdf.output_height,
                pdf_bytes=len(pdf.pdf),
                page_width_points=pdf.page_width_points,
                page_height_points=pdf.page_height_points,
                quality=preset,
                duration=elapsed,
            )
        )

    async def _convert(
        self, request: image_pb2.ConvertToPdfRequest
    ) -> tuple[imaging.PdfResult, imaging.ImageInfo, bytes]:
        source_url = self._storage_url(request.source_url, "source_url")
        upload_url = self._storage_url(request.pdf_upload_url, "pdf_upload_url")
        conversion_id = require(request.conversion_id, "conversion_id", max_length=200)
        if not unquote(urlsplit(upload_url).path).endswith(f"/pdfs/{conversion_id}.pdf"):
            raise TwirpError(
                ErrorCode.PERMISSION_DENIED,
                "pdf_upload_url is not the one of this conversion's PDF",
                {"argument": "pdf_upload_url"},
            )
        image = await self._fetch(source_url)
        metrics.CONVERSION_BYTES_IN.inc(len(image))
        try:
            read = functools.partial(imaging.read_header, image, max_pixels=self.max_image_pixels)
            info = read() if len(image) <= INLINE_HEADER_BYTES else await asyncio.to_thread(read)
        except imaging.ImageRejected as exc:
            raise invalid_argument("source_url", f"the image was refused: {exc.reason}") from exc
        # ImageMagick gets the image once its header passed (format, size, pixel cap, chunk
        # checksums). Pillow decodes every pixel only where ImageMagick would not refuse a
        # corrupt or truncated image itself (a JPEG, cheaply at 1/8 scale, in another thread
        # while ImageMagick converts), and for a PNG only once its conversion failed, to tell
        # bad input from our failure: a sound PNG is decoded once, by ImageMagick (py-spy:
        # Pillow's decode was 15-25 ms of CPU per 1920x1080 PNG).
        pixels: asyncio.Future[None] | None = None
        if not imaging.pixels_checked_by_magick(info):
            pixels = asyncio.ensure_future(asyncio.to_thread(imaging.check_pixels, image))
        async with self.converting:  # its turn: the span times the conversion alone
            with observability.current_span(
                "imagemagick convert",
                attributes={
                    "mcsv.image.width": info.width,
                    "mcsv.image.height": info.height,
                    "mcsv.image.bytes": len(image),
                },
            ):
                try:
                    pdf = await asyncio.to_thread(self.magick.to_pdf, image, info, request.options)
                except (ValueError, imaging.ConversionFailed) as exc:
                    if pixels is None:
                        pixels = asyncio.ensure_future(
                            asyncio.to_thread(imaging.check_pixels, image)
                        )
                    await self._pixels_checked(pixels)  # a refused image: that is the answer
                    if isinstance(exc, ValueError):
                        raise invalid_argument("options", str(exc)) from exc
                    raise TwirpError(ErrorCode.INTERNAL, f"ImageMagick failed: {exc}") from exc
                finally:
                    if pixels is not None and not pixels.done():
                        await asyncio.wait([pixels])
        if pixels is not None:
            await self._pixels_checked(pixels)
        await self._upload(upload_url, pdf.pdf)
        metrics.CONVERSION_BYTES_OUT.inc(len(pdf.pdf))
        return pdf, info, image

    @staticmethod
    async def _pixels_checked(pixels: asyncio.Future[None]) -> None:
        try:
            await pixels
        except imaging.ImageRejected as exc:
            raise invalid_argument("source_url", f"the image was refused: {exc.reason}") from exc

    def _storage_url(self, url: str, argument: str) -> str:
        """The URL, if it points at the configured storage; anything else is refused, so that
        this service cannot be made to fetch from or write to another host."""
        if not url:
            raise invalid_argument(argument, "is required")
        if (problem := character_problem(url)) is not None:  # e.g. CR/LF: malformed anywhere
            raise invalid_argument(argument, problem)
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise invalid_argument(argument, f"is not a URL ({exc})") from exc
        if f"{parts.scheme}://{parts.netloc}" != self.storage_origin or parts.username:
            raise TwirpError(
                ErrorCode.PERMISSION_DENIED,
                f"{argument} must point at the storage ({self.storage_origin})",
                {"argument": argument},
            )
        return require_url(url, argument)  # the rest: a valid port, a URL aiohttp takes

    async def _fetch(self, url: str) -> bytes:
        try:
            return await self.http.get(url, self.max_image_bytes)
        except storage_http.StorageRefused as exc:
            raise self._storage_refused("source_url", exc.status, exc.body) from exc
        except storage_http.TooLarge as exc:
            raise self._too_large(exc.size) from exc
        except storage_http.InvalidStorageURL as exc:
            raise invalid_argument("source_url", f"is not a URL ({exc})") from exc
        except storage_http.StorageUnavailable as exc:
            raise TwirpError(ErrorCode.UNAVAILABLE, f"fetching the image failed: {exc}") from exc

    async def _upload(self, url: str, pdf: bytes) -> None:
        try:
            status, text = await self.http.put(url, pdf, "application/pdf")
        except storage_http.InvalidStorageURL as exc:
            raise invalid_argument("pdf_upload_url", f"is not a URL ({exc})") from exc
        except storage_http.StorageUnavailable as exc:
            raise TwirpError(ErrorCode.UNAVAILABLE, f"storing the PDF failed: {exc}") from exc
        if status == 409:
            # The URL is bound to this conversion's PDF and objects are committed whole, so
            # the PDF is already stored: an earlier attempt whose worker died stored it after
            # this attempt began. Same source, same options: the same PDF.
            log.info("the PDF of %s is already stored; not storing it twice", url.split("?")[0])
            return
        if status not in (200, 201, 204):
            raise self._storage_refused("pdf_upload_url", status, text)

    def _too_large(self, size: int) -> TwirpError:
        return invalid_argument(
            "source_url", f"the image is {size} bytes or more; the limit is {self.max_image_bytes}"
        )

    @staticmethod
    def _storage_refused(argument: str, status: int, body: str) -> TwirpError:
        if status in (401, 403):  # a tampered or expired URL: another attempt will not help
            return TwirpError(
                ErrorCode.PERMISSION_DENIED,
                f"storage refused {argument} ({status}): {body.strip()}",
                {"argument": argument},
            )
        if status == 404:
            return TwirpError(ErrorCode.FAILED_PRECONDITION, f"{argument}: no such object")
        return TwirpError(ErrorCode.UNAVAILABLE, f"storage answered {status} for {argument}")
