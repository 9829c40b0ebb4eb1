"""image_svc's app: the ImageService RPC with ImageMagick (checked at start) and an HTTP client
for the presigned storage URLs."""

from __future__ import annotations

import logging
import os

from mcsv.v1.image_twirp_server import ImageServiceServer
from starlette.applications import Starlette

from internal import config, imaging, storage
from internal.services.common.app import service_app
from internal.services.image_svc.service import ImageService
from internal.services.image_svc.storage_http import StorageHttp

NAME = "image_svc"
log = logging.getLogger(__name__)


def create_app(settings: config.Settings) -> Starlette:
    magick = imaging.ImageMagick(timeout=settings.imagemagick_timeout_seconds)
    version = magick.check()  # fails with a clear message when ImageMagick cannot make PDFs
    log.info("ImageMagick ready: %s", version)
    origin = storage.storage_origin(settings.storage_url, public_url=settings.storage_public_url)
    http = StorageHttp(timeout=settings.rpc_timeout_seconds)
    concurrency = settings.imagemagick_concurrency or len(os.sched_getaffinity(0))
    service = ImageService(
        magick, http, origin, settings.max_upload_bytes, settings.max_image_pixels, concurrency
    )

    return service_app(
        NAME,
        settings,
        [ImageServiceServer(service=service)],
        ready_checks={"imagemagick": magick.check},
        on_shutdown=[http.aclose],
    )
