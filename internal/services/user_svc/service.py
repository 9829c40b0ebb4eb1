"""user_svc: the entry gateway. It creates users and enqueues their welcome email, accepts
image uploads (the only RPC that carries image bytes), stores them and hands job_svc
presigned URLs, and relays every workflow's outcome to client_svc: succeeded, failed or
cancelled, the latest (highest version) winning.

A user or a conversion is committed together with its job request in the outbox (outbox.py),
which the relay (relay.py) sends to job_svc: at once, before the answer, when it can, or once
job_svc is back."""

from __future__ import annotations

import asyncio
import functools
import logging
import mimetypes
import re
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import peewee
from mcsv.twirp import Context, ErrorCode, ServerContext, TwirpError
from mcsv.v1 import client_pb2, common_pb2, job_pb2, user_pb2
from mcsv.v1.client_twirp import AsyncClientServiceClient
from mcsv.v1.job_twirp import AsyncJobServiceClient

from internal import auth, config, observability, storage
from internal.auth import tokens
from internal.data import find_row, insert_once, insert_row, save_row, write_transaction
from internal.services.common.errors import (
    found,
    invalid_argument,
    not_found,
    optional_url,
    require,
    require_email,
    require_outcome,
    require_valid_times,
)
from internal.services.common.paging import next_page_token, page_offset, page_size
from internal.services.common.times import now, timestamp
from internal.services.user_svc import outbox
from internal.services.user_svc.models import (
    ConversionRow,
    UserRow,
    conversion_message,
    user_message,
)
from internal.services.user_svc.outbox import OutboxRow
from internal.services.user_svc.relay import INLINE_LEASE, Delivery, Relay, trace_context
from internal.services.user_svc.retention import UploadRetention

log = logging.getLogger(__name__)

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
        self.client = client
        self.settings = settings
        self.max_upload_bytes = settings.max_upload_bytes
        self.url_ttl = timedelta(seconds=settings.presigned_url_ttl_seconds)
        self.put_ttl = timedelta(seconds=settings.presigned_put_ttl_seconds)
        self.relay = Relay(
            database,
            jobs,
            timeout=settings.rpc_timeout_seconds,
            recorded=self._job_enqueued,
            report=self._job_refused,
        )
        self.retention = UploadRetention(database, store, settings.failed_upload_retention_seconds)

    # Workflow 1

    async def create_user(
        self, ctx: Context, request: user_pb2.CreateUserRequest
    ) -> user_pb2.CreateUserResponse:
        name = require(request.name, "name", max_length=200)
        email = require_email(request.email, "email").lower()
        lease = self._inline_lease()
        user, intent, created = await asyncio.to_thread(
            self._create_user, name, email, trace_context(), lease
        )
        observability.tag(user_id=user.id)
        if created and lease and intent is not None:
            await self.relay.send_own(intent)  # sets intent.job_id when sent
        elif created:
            self.relay.wake()  # the intent is the relay's: at once, not at its next poll
        # A repeated request answers with the first one's job, once job_svc acknowledged it.
        # The API token only to the request that created the user: anyone may repeat a
        # sign-up, and must not get someone else's token by naming their email.
        return user_pb2.CreateUserResponse(
            user=user_message(user),
            job_id=intent.job_id if intent else "",
            api_token=tokens.user_token(self.settings, user.id) if created else "",
        )

    def _create_user(
        self, name: str, email: str, trace: dict[str, str], lease: float
    ) -> tuple[UserRow, OutboxRow | None, bool]:
        """A new user and their welcome email's intent, committed together; the same user
        (and intent) again for a repeated request (same name and email), so that a client
        retrying after a lost answer neither fails nor gets two emails."""
        with self.database.connection_context(), write_transaction(self.database):
            user, created = insert_once(
                UserRow, UserRow.email, id=uuid.uuid4().hex, name=name, email=email,
                created_at=time.time(),
            )  # fmt: skip
            key = f"welcome:{user.id}"
            intent: OutboxRow | None
            if created:
                welcome = welcome_request(user).SerializeToString()
                intent = outbox.add(outbox.EMAIL, key, user.id, welcome, trace, lease)
            else:
                intent = OutboxRow.get_or_none(OutboxRow.key == key)
        if not created and user.name != name:
            raise TwirpError(
                ErrorCode.ALREADY_EXISTS, f"a user with email {email} exists", {"argument": "email"}
            )
        return user, intent, created

    def get_user(self, ctx: Context, request: user_pb2.GetUserRequest) -> user_pb2.GetUserResponse:
        user_id = require(request.id, "id")
        if not auth.may_see(ctx, user_id):  # another user's: as if there were none
            raise not_found("user", user_id)
        return user_pb2.GetUserResponse(user=user_message(self._user(user_id)))

    def _user(self, user_id: str) -> UserRow:
        with self.database.connection_context():
            return found(find_row(UserRow, UserRow.id, user_id), "user", user_id)

    async def notify_email_delivered(
        self, ctx: Context, request: user_pb2.NotifyEmailDeliveredRequest
    ) -> user_pb2.NotifyEmailDeliveredResponse:
        delivery = request.delivery
        user_id = require(delivery.user_id, "delivery.user_id")
        job_id = require(delivery.job_id, "delivery.job_id")
        require_outcome(delivery.outcome, "delivery.outcome")
        require_valid_times(request)
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
        user_id = require(request.user_id, "user_id")
        if not auth.may_see(ctx, user_id):  # the allow-list admits users only
            raise TwirpError(ErrorCode.PERMISSION_DENIED, "uploads only for your own user")
        filename = require(request.filename, "filename", max_length=255)
        image = request.image_data  # a copy at each access: taken once
        size = len(image)
        if size == 0:
            raise invalid_argument("image_data", "is empty")
        if size > self.max_upload_bytes:
            raise invalid_argument(
                "image_data", f"is {size} bytes; the limit is {self.max_upload_bytes}"
            )
        if request.options.quality not in common_pb2.PdfQuality.values():
            raise invalid_argument("options.quality", f"unknown quality {request.options.quality}")
        key = request.idempotency_key.strip() or None
        if key is not None and len(key) > 200:
            raise invalid_argument("idempotency_key", "is longer than 200 characters")
        conversion_id = uuid.uuid4().hex
        observability.tag(user_id=user_id, conversion_id=conversion_id)
        lease = self._inline_lease()
        upload = _Upload(conversion_id, user_id, filename, request.options, image, key)
        row, intent = await asyncio.to_thread(self._accept_upload, upload, trace_context(), lease)
        del image, upload  # stored: its memory goes back before the rest of the request
        if intent is None:  # an earlier request with the same key: its conversion
            observability.tag(conversion_id=row.id)
        elif not lease:
            self.relay.wake()  # the intent is the relay's: at once, not at its next poll
        elif await self.relay.send_own(intent) is Delivery.REJECTED:
            row = await asyncio.to_thread(self._conversion, row.id)  # failed by now
        else:
            row.job_id = intent.job_id
        return user_pb2.ConvertImageResponse(conversion=conversion_message(row))

    def _accept_upload(
        self, upload: _Upload, trace: dict[str, str], lease: float
    ) -> tuple[ConversionRow, OutboxRow | None]:
        """ConvertImage's blocking half, in one thread hop (a hop costs more CPU than the
        reads it saves): the user, then the conversion of an earlier request with the same
        idempotency key (and no intent; nothing is stored), or else the image stored and
        recorded with its job's intent (_store_upload)."""
        user = self._user(upload.user_id)
        if upload.idempotency_key is not None:
            earlier = self._keyed_conversion(user.id, upload.idempotency_key)
            if earlier is not None:
                return earlier, None
        conversion_id, filename, options = upload.conversion_id, upload.filename, upload.options
        safe_name = UNSAFE.sub("_", filename).strip("._") or "image"
        source_key = f"uploads/{conversion_id}/{safe_name}"
        expires = time.time() + self.url_ttl.total_seconds()
        args = job_pb2.ConversionJobArgs(
            conversion_id=conversion_id,
            user_id=user.id,
            user_name=user.name,
            user_email=user.email,
            filename=filename,
            source_url=self.store.presign_get(source_key, self.url_ttl),
            pdf_download_url=self.store.presign_get(pdf_key(conversion_id), self.url_ttl),
            pdf_download_url_expires_at=timestamp(expires),
            options=options,
        )
        row = ConversionRow(
            id=conversion_id,
            user_id=user.id,
            filename=filename,
            options=options.SerializeToString(),
            state=user_pb2.CONVERSION_STATE_PENDING,
            source_key=source_key,
            source_bytes=len(upload.image),
            created_at=time.time(),
            idempotency_key=upload.idempotency_key,
        )
        job = job_pb2.EnqueueConversionRequest(args=args).SerializeToString()
        return self._store_upload(upload.image, row, job, trace, lease)

    def _keyed_conversion(self, user_id: str, key: str) -> ConversionRow | None:
        with self.database.connection_context():
            row: ConversionRow | None = ConversionRow.get_or_none(
                (ConversionRow.user_id == user_id) & (ConversionRow.idempotency_key == key)
            )
        return row

    def _store_upload(
        self, image: bytes, upload: ConversionRow, job: bytes, trace: dict[str, str], lease: float
    ) -> tuple[ConversionRow, OutboxRow | None]:
        """The image stored, then recorded (_record_upload), in one thread hop. A file not
        recorded (a failure, or a concurrent request with the same key first) is deleted."""
        name = upload.source_key.rpartition("/")[2]
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self.store.put(upload.source_key, image, content_type)
        try:
            row, intent = self._record_upload(upload, job, trace, lease)
        except BaseException:
            # Not recorded: the caller is told it failed, so its file may not stay behind.
            self.store.delete(upload.source_key)
            raise
        if intent is None:
            self.store.delete(upload.source_key)
        return row, intent

    def _record_upload(
        self, upload: ConversionRow, job: bytes, trace: dict[str, str], lease: float
    ) -> tuple[ConversionRow, OutboxRow | None]:
        """The conversion and its job's intent, committed together. With the idempotency key
        of an earlier conversion of the user: that conversion, and no intent."""
        with self.database.connection_context(), write_transaction(self.database):
            if upload.idempotency_key is not None:
                earlier = self._keyed_conversion(upload.user_id, upload.idempotency_key)
                if earlier is not None:
                    return earlier, None
            try:
                with self.database.atomic():  # a savepoint: a lost race spoils nothing else
                    insert_row(upload)
            except peewee.IntegrityError:  # the same key, committed since (PostgreSQL)
                assert upload.idempotency_key is not None
                return ConversionRow.get(
                    (ConversionRow.user_id == upload.user_id)
                    & (ConversionRow.idempotency_key == upload.idempotency_key)
                ), None
            key = f"conversion:{upload.id}"
            intent = outbox.add(outbox.CONVERSION, key, upload.id, job, trace, lease)
        return upload, intent

    # The outbox

    def _inline_lease(self) -> float:
        """How long a request keeps its new intent to send it itself before answering; 0
        (the relay's at once) while job_svc is known to be failing, so as not to wait on it."""
        return 0.0 if self.relay.suspect() else INLINE_LEASE

    def _job_enqueued(self, intent: OutboxRow, job_id: str) -> None:
        """job_svc acknowledged an intent (inside the transaction that records it)."""
        if intent.kind == outbox.CONVERSION:
            self.database.execute_sql(  # type: ignore[no-untyped-call]
                _job_id_sql(self.database.param), (job_id, intent.subject_id, "")
            )

    async def _job_refused(self, intent: OutboxRow) -> None:
        """job_svc refused an intent for good: a conversion fails as any failed conversion
        does (recorded, its file removed, the client told); a welcome email cannot be."""
        if intent.kind == outbox.EMAIL:
            # TODO: tell the client, once an email outcome can be reported without a job.
            log.error("user %s gets no welcome email: %s", intent.subject_id, intent.error)
            return
        args = job_pb2.EnqueueConversionRequest.FromString(bytes(intent.request)).args
        report = common_pb2.ConversionReport(
            conversion_id=intent.subject_id,
            user_id=args.user_id,
            outcome=common_pb2.OUTCOME_FAILED,
            error=f"the conversion job could not be enqueued: {intent.error}",
            finished_at=now(),
        )
        context = ServerContext("POST", "/outbox", {})
        await self.conversion_complete(context, user_pb2.ConversionCompleteRequest(report=report))

    def _save(self, row: ConversionRow) -> None:
        with self.database.connection_context(), write_transaction(self.database):
            save_row(row)

    def get_conversion(
        self, ctx: Context, request: user_pb2.GetConversionRequest
    ) -> user_pb2.GetConversionResponse:
        row = self._conversion(require(request.id, "id"))
        if not auth.may_see(ctx, row.user_id):  # another user's: as if there were none
            raise not_found("conversion", row.id)
        answer = user_pb2.GetConversionResponse(conversion=conversion_message(row))
        who = auth.caller(ctx)
        if who == auth.Principal("service", "job_svc") and may_convert(row):
            answer.pdf_upload_url = self._pdf_upload_url(row.id)
        return answer

    def list_conversions(
        self, ctx: Context, request: user_pb2.ListConversionsRequest
    ) -> user_pb2.ListConversionsResponse:
        size, offset = page_size(request.page_size), page_offset(request.page_token)
        query = ConversionRow.select().order_by(ConversionRow.created_at.desc(), ConversionRow.id)
        if request.user_id:
            query = query.where(ConversionRow.user_id == request.user_id)
        if request.state:
            query = query.where(ConversionRow.state == request.state)
        with self.database.connection_context():
            rows = list(query.offset(offset).limit(size + 1))
        return user_pb2.ListConversionsResponse(
            conversions=[conversion_message(row) for row in rows[:size]],
            next_page_token=next_page_token(offset, size, len(rows) > size),
        )

    def _pdf_upload_url(self, conversion_id: str) -> str:
        """A fresh, short-lived PUT URL for the PDF of a conversion to convert, for the worker
        about to convert it. A PDF an earlier attempt left (it died before reporting) is
        removed first: PUT URLs are refused once their object exists."""
        key = pdf_key(conversion_id)
        self.store.delete(key)
        return self.store.presign_put(key, self.put_ttl, "application/pdf")

    def _conversion(self, conversion_id: str) -> ConversionRow:
        with self.database.connection_context():
            row = find_row(ConversionRow, ConversionRow.id, conversion_id)
        return found(row, "conversion", conversion_id)

    async def conversion_complete(
        self, ctx: Context, request: user_pb2.ConversionCompleteRequest
    ) -> user_pb2.ConversionCompleteResponse:
        report = request.report
        conversion_id = require(report.conversion_id, "report.conversion_id")
        require_outcome(report.outcome, "report.outcome")
        optional_url(report.pdf_url, "report.pdf_url")
        require_valid_times(request)
        if report.outcome not in STATE_AFTER:
            raise invalid_argument("report.outcome", "must be succeeded, failed or cancelled")
        row = await asyncio.to_thread(self._record_outcome, conversion_id, report)
        observability.tag(user_id=row.user_id, conversion_id=row.id, job_id=report.job_id)
        await self.client.receive_notification(
            client_pb2.ReceiveNotificationRequest(
                notification_id=f"conversion:{row.id}", sent_at=now(), conversion_finished=report
            )
        )
        if row.state == user_pb2.CONVERSION_STATE_SUCCEEDED:
            # The PDF is what is kept. The original goes once the client has been told (a
            # file's removal waits on the filesystem's journal: ~1 ms, 5 under load), and
            # again for a repeated report, in case this process was stopped before that.
            await asyncio.to_thread(self.store.delete, row.source_key)
        return user_pb2.ConversionCompleteResponse(conversion=conversion_message(row))

    def _record_outcome(
        self, conversion_id: str, report: common_pb2.ConversionReport
    ) -> ConversionRow:
        """The conversion, read and finished (_finish) in one thread hop."""
        row = self._conversion(conversion_id)
        self._finish(row, report)
        return row

    def _finish(self, row: ConversionRow, report: common_pb2.ConversionReport) -> None:
        """Records the outcome, unless one of a higher version is recorded (a repeated
        report changes nothing). A succeeded conversion's original is removed by the caller;
        a failed or cancelled one's is kept until its retention ends, for a retry."""
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

    def sweep_uploads(self) -> int:
        """Deletes the uploads of failed and cancelled conversions whose retention ended."""
        return self.retention.sweep()

    def prune_outbox(self) -> int:
        """Deletes the outbox's finished intents whose retention ended; their count."""
        return outbox.prune(self.database, time.time() - self.settings.outbox_retention_seconds)


@dataclass(frozen=True, slots=True)
class _Upload:
    """A ConvertImage request, checked: what its thread hop stores and records."""

    conversion_id: str
    user_id: str
    filename: str
    options: common_pb2.ConversionOptions
    image: bytes
    idempotency_key: str | None


@functools.cache
def _job_id_sql(param: str) -> str:
    """Records a conversion's job once job_svc acknowledged it, unless recorded already:
    written once (peewee builds a query's SQL anew on each run)."""
    table = ConversionRow._meta.table_name
    return f'UPDATE "{table}" SET "job_id" = {param} WHERE "id" = {param} AND "job_id" = {param}'


def may_convert(row: ConversionRow) -> bool:
    """Whether a worker may (still) convert this conversion, and so get a PUT URL for its
    PDF: while it is pending, or failed or cancelled with its upload still kept (a job
    retried by hand, JobService.RetryJob); never once it succeeded (its PDF exists)."""
    if row.state == user_pb2.CONVERSION_STATE_PENDING:
        return True
    if row.state in (user_pb2.CONVERSION_STATE_FAILED, user_pb2.CONVERSION_STATE_CANCELLED):
        return row.upload_kept_until is not None and row.upload_kept_until > time.time()
    return False


def pdf_key(conversion_id: str) -> str:
    """Where a conversion's PDF is stored."""
    return f"pdfs/{conversion_id}.pdf"


def welcome_request(user: UserRow) -> job_pb2.EnqueueEmailRequest:
    return job_pb2.EnqueueEmailRequest(
        args=job_pb2.EmailJobArgs(
            idempotency_key=f"welcome:{user.id}",
            user_id=user.id,
            user_name=user.name,
            recipient=user.email,
            template=common_pb2.EMAIL_TEMPLATE_WELCOME,
        )
    )
