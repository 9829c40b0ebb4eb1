"""job_svc's RPCs: enqueue email and conversion jobs (the job is a row; its Dramatiq message
carries only the job id and its dispatch number), read them with their history, list, cancel
(reporting the cancellation) and retry them, and count them per queue."""

from __future__ import annotations

from mcsv.twirp import Context
from mcsv.v1 import common_pb2, job_pb2

from internal import mail, observability
from internal.services.common.errors import (
    invalid_argument,
    require,
    require_email,
    require_url,
    require_valid_times,
)
from internal.services.common.paging import next_page_token, page_offset, page_size
from internal.services.job_svc.dispatch import Dispatcher
from internal.services.job_svc.models import (
    CONVERSION,
    EMAIL,
    ArgsT,
    JobKind,
    event_message,
    job_message,
)
from internal.services.job_svc.store import JobStore


class JobService:
    """The JobService RPCs; `dispatcher` puts jobs' messages on the broker."""

    def __init__(self, store: JobStore, dispatcher: Dispatcher) -> None:
        self.store = store
        self.dispatcher = dispatcher

    def enqueue_email(
        self, ctx: Context, request: job_pb2.EnqueueEmailRequest
    ) -> job_pb2.EnqueueEmailResponse:
        args = request.args
        key = require(args.idempotency_key, "args.idempotency_key", max_length=200)
        check_email_args(args)
        return job_pb2.EnqueueEmailResponse(job=self._enqueue(EMAIL, args, f"email:{key}"))

    def enqueue_conversion(
        self, ctx: Context, request: job_pb2.EnqueueConversionRequest
    ) -> job_pb2.EnqueueConversionResponse:
        args = request.args
        conversion_id = require(args.conversion_id, "args.conversion_id", max_length=200)
        args.ClearField("pdf_upload_url")  # no longer used: it is minted when the job runs
        check_conversion_args(args)
        job = self._enqueue(CONVERSION, args, f"conversion:{conversion_id}")
        return job_pb2.EnqueueConversionResponse(job=job)

    def _enqueue(self, kind: JobKind[ArgsT], args: ArgsT, key: str) -> job_pb2.Job:
        job, created = self.store.enqueue(kind, args, key)
        observability.tag(job_id=job.id)
        if created:
            # The row is the job: should its message not go out now, the periodic
            # resend_unsent sends it. A repeated request sends nothing (its job has its one
            # message already, or is running or finished).
            self.dispatcher.send_all([job])
        return job_message(job)

    def get_job(self, ctx: Context, request: job_pb2.GetJobRequest) -> job_pb2.GetJobResponse:
        job, events = self.store.get(require(request.id, "id"))
        return job_pb2.GetJobResponse(
            job=job_message(job), events=[event_message(e) for e in events]
        )

    def list_jobs(self, ctx: Context, request: job_pb2.ListJobsRequest) -> job_pb2.ListJobsResponse:
        size, offset = page_size(request.page_size), page_offset(request.page_token)
        rows, more = self.store.page(request.queue, request.state, request.actor, size, offset)
        return job_pb2.ListJobsResponse(
            jobs=[job_message(row) for row in rows],
            next_page_token=next_page_token(offset, size, more),
        )

    def cancel_job(
        self, ctx: Context, request: job_pb2.CancelJobRequest
    ) -> job_pb2.CancelJobResponse:
        job, reports = self.store.cancel(
            require(request.id, "id"), request.reason or "cancelled by request"
        )
        self.dispatcher.send_all(reports)
        return job_pb2.CancelJobResponse(job=job_message(job))

    def retry_job(self, ctx: Context, request: job_pb2.RetryJobRequest) -> job_pb2.RetryJobResponse:
        job = self.store.retry(require(request.id, "id"))
        self.dispatcher.send_all([job])
        return job_pb2.RetryJobResponse(job=job_message(job))

    def get_queue_stats(
        self, ctx: Context, request: job_pb2.GetQueueStatsRequest
    ) -> job_pb2.GetQueueStatsResponse:
        return job_pb2.GetQueueStatsResponse(queues=self.store.stats(request.queue))


def check_email_args(args: job_pb2.EmailJobArgs) -> None:
    """invalid_argument naming the field for email job args that no attempt could deliver
    and report (what DeliverEmail and NotifyEmailDelivered would refuse), so that such a job
    is never enqueued: the recipient, the user, the template and its variables (mail.check:
    what email_svc's rendering would refuse)."""
    require(args.user_id, "args.user_id", max_length=200)
    recipient = require_email(args.recipient, "args.recipient")
    if args.template == common_pb2.EMAIL_TEMPLATE_UNSPECIFIED:
        raise invalid_argument("args.template", "is required")
    try:
        mail.check(
            args.template, {"user_name": args.user_name, "recipient": recipient, **args.variables}
        )
    except mail.TemplateError as exc:
        raise invalid_argument("args.variables", str(exc)) from exc


def check_conversion_args(args: job_pb2.ConversionJobArgs) -> None:
    """invalid_argument naming the field for conversion job args that no attempt could
    convert, email and report: the user's address, the two URLs (well formed; image_svc
    also checks they point at the storage) and the link's expiry (a time the worker can
    write into the email). pdf_upload_url is not checked: it is no longer carried (the worker
    asks user_svc for a fresh one when it runs the job), and EnqueueConversion clears it."""
    require_email(args.user_email, "args.user_email")
    for name in ("source_url", "pdf_download_url"):
        require_url(getattr(args, name), f"args.{name}")
    require_valid_times(args, "args.")
