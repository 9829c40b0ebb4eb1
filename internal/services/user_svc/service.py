"""user_svc: the entry gateway. It creates users and enqueues their welcome email, accepts
image uploads (the only RPC that carries image bytes), stores them and hands job_svc
presigned URLs, and relays every workflow's outcome to client_svc: succeeded, failed or
cancelled, the latest (highest version) winning."""

from __future__ import annotations

import asyncio
import mimetypes
import re
import time
import uuid
from datetime import timedelta

import peewee
from mcsv.twirp import Context, ErrorCode, TwirpError
from mcsv.v1 import client_pb2, common_pb2, job_pb2, user_pb2
from mcsv.v1.client_twirp import AsyncClientServiceClient
from mcsv.v1.job_twirp import AsyncJobServiceClient

from internal import config, observability, storage
from internal.data import insert_once, write_transaction
from internal.services.common.errors import found, invalid_argument, require, require_email
from internal.services.common.times import now, timestamp
from internal.services.user_svc.models import (
    ConversionRow,
    UserRow,
    conversion_message,
    user_message,
)
from internal.services.user_svc.retention import UploadRetention

# What a stored file may be called: the upload's name, reduced to safe characters.
UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# A conversion's state after each outcome job_svc reports.
STATE_AFTER = {
    common_pb2.OUTCOME_SUCCEEDED: user_pb2.CONVERSION_STATE_SUCCEEDED,
    common_pb2.OUTCOME_FAILED: user_pb2.CONVERSION_STATE_FAILED,
    common_pb2.OUTCOME_CANCELLED: user_pb2.CONVERSION_STATE_CANCELLED,
}


class UserService:
    def __init__(
        self,
        database: peewee.Database,
        store: storage.Storage,
        jobs: AsyncJobServiceClient,
        client: AsyncClientServiceClient,
        settings: config.Settings,
    ) -> None:
        self.database = database
        self.store = store
        self.jobs = jobs
        self.client = client
        self.max_upload_bytes = settings.max_upload_bytes
        self.url_ttl = timedelta(seconds=settings.presigned_url_ttl_seconds)
        self.retention = UploadRetention(database, store, settings.failed_upload_retention_seconds)

    # Workflow 1

    async def create_user(
        self, ctx: Context, request: user_pb2.CreateUserRequest
    ) -> user_pb2.CreateUserResponse:
        name = require(request.name, "name", max_length=200)
        email = require_email(request.email, "email").lower()
        user = await asyncio.to_thread(self._create_user, name, email)
        observability.tag(user_id=user.id)
        job = await self.jobs.enqueue_email(
            job_pb2.EnqueueEmailRequest(
                args=job_pb2.EmailJobArgs(
                    idempotency_key=f"welcome:{user.id}",
                    user_id=user.id,
                    user_name=user.name,
                    recipient=user.email,
                    template=common_pb2.EMAIL_TEMPLATE_WELCOME,
                )
            )
        )
        return user_pb2.CreateUserResponse(user=user_message(user), job_id=job.job.id)

    def _create_user(self, name: str, email: str) -> UserRow:
        """A new user; the same one again for a repeated request (same name and email), so
        that a client retrying after a lost answer neither fails nor gets two emails."""
        with self.database.connection_context(), write_transaction(self.database):
            user, created = insert_once(
                UserRow, UserRow.email, id=uuid.uuid4().hex, name=name, email=email,
                created_at=time.time(),
            )  # fmt: skip
        if not created and user.name != name:
            raise TwirpError(
                ErrorCode.ALREADY_EXISTS, f"a user with email {email} exists", {"argument": "email"}
            )
        return user

    def get_user(self, ctx: Context, request: user_pb2.GetUserRequest) -> user_pb2.GetUserResponse:
        return user_pb2.GetUserResponse(user=user_message(self._user(require(request.id, "id"))))

    def _user(self, user_id: str) -> UserRow:
        with self.database.connection_context():
            return found(UserRow.get_or_none(UserRow.id == user_id), "user", user_id)

    async def notify_email_delivered(
        self, ctx: Context, request: user_pb2.NotifyEmailDeliveredRequest
    ) -> user_pb2.NotifyEmailDeliveredResponse:
        delivery = request.delivery
        user_id = require(delivery.user_id, "delivery.user_id")
        job_id = require(delivery.job_id, "delivery.job_id")
        observability.tag(user_id=user_id, job_id=job_id)
        await self.client.receive_notification(
            client_pb2.ReceiveNotificationRequest(
                notification_id=f"email:{job_id}", sent_at=now(), email_delivered=delivery
            )
        )
        return user_pb2.NotifyEmailDeliveredResponse()

    # Workflow 2

    async def convert_image(
        self, ctx: Context, request: user_pb2.ConvertImageRequest
    ) -> user_pb2.ConvertImageResponse:
        user = await asyncio.to_thread(self._user, require(request.user_id, "user_id"))
        filename = require(request.filename, "filename", max_length=255)
        size = len(request.image_data)
        if size == 0:
            raise invalid_argument("image_data", "is empty")
        if size > self.max_upload_bytes:
            raise invalid_argument(
                "image_data", f"is {size} bytes; the limit is {self.max_upload_bytes}"
            )
        options = request.options
        if options.quality not in common_pb2.PdfQuality.values():
            raise invalid_argument("options.quality", f"unknown quality {options.quality}")
        conversion_id = uuid.uuid4().hex
        observability.tag(user_id=user.id, conversion_id=conversion_id)
        safe_name = UNSAFE.sub("_", filename).strip("._") or "image"
        source_key = f"uploads/{conversion_id}/{safe_name}"
        content_type = mimetypes.guess_type(safe_name)[0] or "application/octet-stream"
        await asyncio.to_thread(self.store.put, source_key, request.image_data, content_type)
        pdf_key = f"pdfs/{conversion_id}.pdf"
        expires = time.time() + self.url_ttl.total_seconds()
        args = job_pb2.ConversionJobArgs(
            conversion_id=conversion_id,
            user_id=user.id,
            user_name=user.name,
            user_email=user.email,
            filename=filename,
            source_url=self.store.presign_get(source_key, self.url_ttl),
            pdf_upload_url=self.store.presign_put(pdf_key, self.url_ttl, "application/pdf"),
            pdf_download_url=self.store.presign_get(pdf_key, self.url_ttl),
            pdf_download_url_expires_at=timestamp(expires),
            options=options,
        )
        row = await asyncio.to_thread(
            self._record_upload, conversion_id, user.id, filename, options, source_key, size
        )
        try:
            job = await self.jobs.enqueue_conversion(job_pb2.EnqueueConversionRequest(args=args))
        except BaseException:
            # The caller is told the upload failed, so nothing of it may stay behind. (Should
            # job_svc have enqueued it after all, its answer lost, the job finds no conversion
            # and is discarded.)
            await asyncio.to_thread(self._forget_upload, row)
            raise
        row.job_id = job.job.id
        await asyncio.to_thread(self._save, row)
        return user_pb2.ConvertImageResponse(conversion=conversion_message(row))

    def _record_upload(
        self,
        conversion_id: str,
        user_id: str,
        filename: str,
        options: common_pb2.ConversionOptions,
        source_key: str,
        size: int,
    ) -> ConversionRow:
        with self.database.connection_context():
            return ConversionRow.create(
                id=conversion_id,
                user_id=user_id,
                filename=filename,
                options=options.SerializeToString(),
                state=user_pb2.CONVERSION_STATE_PENDING,
                source_key=source_key,
                source_bytes=size,
                created_at=time.time(),
            )

    def _forget_upload(self, row: ConversionRow) -> None:
        self.store.delete(row.source_key)
        with self.database.connection_context():
            row.delete_instance()

    def _save(self, row: ConversionRow) -> None:
        with self.database.connection_context():
            row.save()

    def get_conversion(
        self, ctx: Context, request: user_pb2.GetConversionRequest
    ) -> user_pb2.GetConversionResponse:
        row = self._conversion(require(request.id, "id"))
        return user_pb2.GetConversionResponse(conversion=conversion_message(row))

    def _conversion(self, conversion_id: str) -> ConversionRow:
        with self.database.connection_context():
            row = ConversionRow.get_or_none(ConversionRow.id == conversion_id)
        return found(row, "conversion", conversion_id)

    async def conversion_complete(
        self, ctx: Context, request: user_pb2.ConversionCompleteRequest
    ) -> user_pb2.ConversionCompleteResponse:
        report = request.report
        row = await asyncio.to_thread(
            self._conversion, require(report.conversion_id, "report.conversion_id")
        )
        observability.tag(user_id=row.user_id, conversion_id=row.id, job_id=report.job_id)
        if report.outcome not in STATE_AFTER:
            raise invalid_argument("report.outcome", "must be succeeded, failed or cancelled")
        await asyncio.to_thread(self._finish, row, report)
        await self.client.receive_notification(
            client_pb2.ReceiveNotificationRequest(
                notification_id=f"conversion:{row.id}", sent_at=now(), conversion_finished=report
            )
        )
        return user_pb2.ConversionCompleteResponse(conversion=conversion_message(row))

    def _finish(self, row: ConversionRow, report: common_pb2.ConversionReport) -> None:
        """Records the outcome, unless one of a higher version is recorded (a repeated
        report changes nothing). A succeeded conversion's original is removed, the PDF being
        what is kept; a failed or cancelled one's is kept until its retention ends, for a
        retry."""
        succeeded = report.outcome == common_pb2.OUTCOME_SUCCEEDED
        if report.version and report.version <= row.report_version:
            return  # this outcome or a later one is recorded already
        if not report.version and row.state == user_pb2.CONVERSION_STATE_SUCCEEDED:
            return  # unversioned (an older sender): a finished PDF is not undone
        now = time.time()
        row.state = STATE_AFTER[report.outcome]
        row.report_version = report.version
        row.pdf_url = report.pdf_url
        row.result = report.result.SerializeToString() if report.HasField("result") else None
        row.error = report.error
        row.finished_at = now
        row.upload_kept_until = None if succeeded else now + self.retention.seconds
        self._save(row)
        if succeeded:
            self.store.delete(row.source_key)

    def sweep_uploads(self) -> int:
        """Deletes the uploads of failed and cancelled conversions whose retention ended."""
        return self.retention.sweep()
