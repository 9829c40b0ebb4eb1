"""Converting an inspected PNG or JPEG to PDF with ImageMagick's `convert`, run as a subprocess
under the project's security policy (policy.xml), resource limits and a timeout."""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from mcsv.v1 import common_pb2
from PIL import Image

from internal.imaging.errors import ConversionFailed, ImageMagickUnavailable
from internal.imaging.inspection import ImageInfo
from internal.imaging.presets import output_size, page_points, preset_for, resize_geometry

INSTALL_IMAGEMAGICK = "install imagemagick (apt-get install imagemagick)"
INSTALL_POLICY = "run `python -m internal.imaging.install_policy` (as root)"

# The coder named before "-" is the only one ImageMagick may use to read the input, whatever
# the bytes claim to be.
_INPUT_CODERS: dict[int, str] = {
    common_pb2.IMAGE_FORMAT_PNG: "png",
    common_pb2.IMAGE_FORMAT_JPEG: "jpeg",
}
_STDERR_TAIL_CHARS = 2000
_VERSION_TIMEOUT = 10.0


@dataclass(frozen=True)
class PdfResult:
    """A one-page PDF and the size of the image on it, in pixels and in points (1/72 inch)."""

    pdf: bytes
    output_width: int
    output_height: int
    page_width_points: float
    page_height_points: float


class ImageMagick:
    """Runs ImageMagick's `binary` (`convert` from ImageMagick 6, or 7's compatibility command).

    `timeout` is in seconds; the process is killed when it is exceeded. The limits are
    ImageMagick resource sizes such as "256MiB"; the security policy caps them anyway."""

    def __init__(
        self,
        binary: str = "convert",
        *,
        timeout: float = 60.0,
        memory_limit: str = "256MiB",
        map_limit: str = "512MiB",
        disk_limit: str = "1GiB",
        thread_limit: int = 2,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if thread_limit < 1:
            raise ValueError(f"thread_limit must be at least 1, got {thread_limit}")
        self.binary = binary
        self.timeout = timeout
        self._limits = {
            "memory": memory_limit,
            "map": map_limit,
            "disk": disk_limit,
            # ImageMagick's own clock, in whole seconds, as a second line of defence.
            "time": str(max(1, math.ceil(timeout))),
            "thread": str(thread_limit),
        }

    def command(
        self, info: ImageInfo, options: common_pb2.ConversionOptions, *, temp_dir: str
    ) -> list[str]:
        """The argv that converts the image on stdin to a PDF on stdout; ImageMagick keeps its
        temporary files (pixel cache) in `temp_dir`."""
        coder = _INPUT_CODERS.get(info.format)
        if coder is None:
            raise ValueError(f"ImageInfo.format must be PNG or JPEG, got {info.format}")
        preset = preset_for(options.quality)
        argv = [self.binary]
        for resource, value in self._limits.items():
            argv += ["-limit", resource, value]
        argv += ["-define", f"registry:temporary-path={temp_dir}", f"{coder}:-"]
        if info.format == common_pb2.IMAGE_FORMAT_JPEG:
            argv.append("-auto-orient")  # turn by the EXIF orientation, as ImageInfo says
        geometry = resize_geometry(options.max_width, options.max_height)
        if geometry is not None:
            argv += ["-resize", geometry]
        if options.strip_metadata:
            argv.append("-strip")
        # Without -units a PNG's pHYs (pixels per metre) would make -density per centimetre.
        argv += ["-units", "PixelsPerInch", "-density", str(preset.density)]
        argv += ["-quality", str(preset.quality), "pdf:-"]
        return argv

    def to_pdf(
        self, image: bytes, info: ImageInfo, options: common_pb2.ConversionOptions
    ) -> PdfResult:
        """Converts `image` (already checked by inspect_image, which gave `info`) to a one-page
        PDF whose page is exactly the (resized) image at the preset's density."""
        preset = preset_for(options.quality)
        width, height = output_size(*info.oriented_size, options.max_width, options.max_height)
        with tempfile.TemporaryDirectory(prefix="mcsv-magick-") as temp_dir:
            argv = self.command(info, options, temp_dir=temp_dir)
            completed = self._run(argv, image)
        if completed.returncode != 0:
            raise ConversionFailed(
                f"ImageMagick exited with status {completed.returncode}: {_tail(completed.stderr)}"
            )
        if not completed.stdout.startswith(b"%PDF-"):
            raise ConversionFailed(f"ImageMagick wrote no PDF: {_tail(completed.stderr)}")
        return PdfResult(
            pdf=completed.stdout,
            output_width=width,
            output_height=height,
            page_width_points=page_points(width, preset.density),
            page_height_points=page_points(height, preset.density),
        )

    def check(self) -> str:
        """Proves ImageMagick works as we use it by converting a tiny PNG to PDF; returns its
        version line. Raises ImageMagickUnavailable saying what to do when it does not."""
        path = shutil.which(self.binary)
        if path is None:
            raise ImageMagickUnavailable(
                f"ImageMagick's `{self.binary}` was not found: {INSTALL_IMAGEMAGICK}"
            )
        version = self._version(path)
        try:
            self.to_pdf(_tiny_png(), _TINY_PNG_INFO, common_pb2.ConversionOptions())
        except ConversionFailed as exc:
            raise ImageMagickUnavailable(_diagnose(str(exc))) from exc
        return version

    def _version(self, path: str) -> str:
        try:
            completed = self._run([path, "-version"], b"", timeout=_VERSION_TIMEOUT)
        except ConversionFailed as exc:
            raise ImageMagickUnavailable(f"`{path} -version` did not answer: {exc}") from exc
        output = completed.stdout.decode(errors="replace").strip()
        first_line = output.splitlines()[0] if output else ""
        if not first_line.startswith("Version: ImageMagick"):
            printed = first_line or _tail(completed.stderr) or "nothing"
            raise ImageMagickUnavailable(
                f"`{path}` is not ImageMagick (`-version` printed {printed!r}): "
                f"{INSTALL_IMAGEMAGICK}"
            )
        return first_line

    def _run(
        self, argv: list[str], stdin: bytes, timeout: float | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        limit = self.timeout if timeout is None else timeout
        try:
            # run() kills the process when the timeout expires, then reaps it.
            return subprocess.run(argv, input=stdin, capture_output=True, timeout=limit)
        except subprocess.TimeoutExpired as exc:
            raise ConversionFailed(
                f"ImageMagick did not finish within {limit:g} s and was killed: "
                f"{_tail(exc.stderr) or 'no output'}"
            ) from exc
        except OSError as exc:  # missing or not executable
            raise ImageMagickUnavailable(
                f"cannot run ImageMagick's `{argv[0]}` ({exc.strerror}): {INSTALL_IMAGEMAGICK}"
            ) from exc


_TINY_PNG_INFO = ImageInfo(format=common_pb2.IMAGE_FORMAT_PNG, width=2, height=2)


def _tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), "red").save(buffer, "PNG")
    return buffer.getvalue()


def _diagnose(failure: str) -> str:
    if "security policy `PDF'" in failure:
        return f"the ImageMagick security policy forbids PDF: {INSTALL_POLICY} ({failure})"
    if "security policy" in failure:
        return (
            f"the ImageMagick security policy forbids converting PNG to PDF: {INSTALL_POLICY} "
            f"({failure})"
        )
    return f"ImageMagick cannot convert a test PNG to PDF: {failure}"


def _tail(stderr: bytes | str | None) -> str:
    if not stderr:
        return ""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    return text.strip()[-_STDERR_TAIL_CHARS:]
