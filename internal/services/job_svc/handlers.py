"""What a worker does for each kind of job, given the job's args: deliver an email (workflow
1), convert an image (workflow 2), or report either's outcome to user_svc (a report job).
The work of an email or conversion job returns the report of its success; a failure raises,
and the worker asks the retry policy what to do. Each step is idempotent, keyed by the
job's idempotency key or conversion id."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic

from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import common_pb2, email_pb2, image_pb2, job_pb2, user_pb2
from mcsv.v1.email_twirp import EmailServiceClient
from mcsv.v1.image_twirp import ImageServiceClient
from mcsv.v1.user_twirp import UserServiceClient

from internal import observability
from internal.peers import SyncPeers
from internal.services.job_svc import outcomes
from internal.services.job_svc.models import CONVERSION, EMAIL, REPORT, ArgsT, JobKind, JobRow

log = logging.getLogger(__name__)


@dataclass
class Peers:
    """The services a worker calls."""

    users: UserServiceClient
    emails: EmailServiceClient
    images: ImageServiceClient

    @classmethod
    def connect(cls, peers: SyncPeers) -> Peers:
        settings = peers.settings
        return cls(
            users=peers.client(UserServiceClient),
            emails=peers.client(EmailServiceClient),
            # A conversion takes as long as ImageMagick may take, and then some.
            images=peers.client(
                ImageServiceClient,
                timeout=settings.rpc_timeout_seconds + settings.imagemagick_timeout_seconds,
            ),
        )


@dataclass(frozen=True)
class JobHandler(Generic[ArgsT]):
    """One kind of job as a worker runs it: its work, which returns the report of its
    success to enqueue (None: nothing to report)."""

    kind: JobKind[ArgsT]
    work: Callable[[JobRow, ArgsT], job_pb2.ReportJobArgs | None]


def job_handlers(peers: Peers) -> dict[str, JobHandler[Any]]:
    """The handler of each kind of job, by actor name."""
    emails, conversions, reports = EmailJobs(peers), ConversionJobs(peers), ReportJobs(peers)
    handlers: list[JobHandler[Any]] = [
        JobHandler(EMAIL, emails.deliver),
        JobHandler(CONVERSION, conversions.convert),
        JobHandler(REPORT, reports.send),
    ]
    return {handler.kind.actor: handler for handler in handlers}


class EmailJobs:
    """Workflow 1: the welcome email."""

    def __init__(self, peers: Peers) -> None:
        self.peers = peers

    def deliver(self, job: JobRow, args: job_pb2.EmailJobArgs) -> job_pb2.ReportJobArgs:
        observability.tag(user_id=args.user_id)
        delivered = self.peers.emails.deliver_email(
            email_pb2.DeliverEmailRequest(
                idempotency_key=args.idempotency_key,
                user_id=args.user_id,
                user_name=args.user_name,
                recipient=args.recipient,
                template=args.template,
                variables=args.variables,
            )
        )
        return outcomes.email_succeeded(job, args, delivered.email.id)


class ConversionJobs:
    """Workflow 2: the PDF, then the conversion-complete email."""

    def __init__(self, peers: Peers) -> None:
        self.peers = peers

    def convert(self, job: JobRow, args: job_pb2.ConversionJobArgs) -> job_pb2.ReportJobArgs | None:
        observability.tag(user_id=args.user_id, conversion_id=args.conversion_id)
        known = self.peers.users.get_conversion(
            user_pb2.GetConversionRequest(id=args.conversion_id)
        )
        if known.conversion.state == user_pb2.CONVERSION_STATE_SUCCEEDED:
            # user_svc heard of this conversion's success already: the original is gone and
            # the PDF, email and report exist.
            log.info("conversion %s already succeeded; nothing to do", args.conversion_id)
            return None
        if not known.pdf_upload_url:
            # user_svc mints one only while the conversion may be converted: pending, or
            # failed or cancelled with its upload still kept (a retry within the retention).
            raise TwirpError(
                ErrorCode.FAILED_PRECONDITION,
                f"conversion {args.conversion_id} already finished: its image is removed",
            )
        converted = self.peers.images.convert_to_pdf(
            image_pb2.ConvertToPdfRequest(
                conversion_id=args.conversion_id,
                source_url=args.source_url,
                pdf_upload_url=known.pdf_upload_url,  # fresh, for this attempt only
                options=args.options,
            )
        )
        self.peers.emails.deliver_email(
            email_pb2.DeliverEmailRequest(
                idempotency_key=f"conversion:{args.conversion_id}",
                user_id=args.user_id,
                user_name=args.user_name,
                recipient=args.user_email,
                template=common_pb2.EMAIL_TEMPLATE_CONVERSION_COMPLETE,
                variables={
                    "pdf_url": args.pdf_download_url,
                    "filename": args.filename,
                    "pdf_bytes": str(converted.result.pdf_bytes),
                    "expires_at": args.pdf_download_url_expires_at.ToJsonString(),
                },
            )
        )
        return outcomes.conversion_succeeded(job, args, converted.result)


class ReportJobs:
    """Tells user_svc how an email or conversion job ended; user_svc relays it to the
    client. Nothing reports on a report job."""

    def __init__(self, peers: Peers) -> None:
        self.peers = peers

    def send(self, job: JobRow, args: job_pb2.ReportJobArgs) -> None:
        which = args.WhichOneof("outcome")
        if which == "email_delivered":
            delivery = args.email_delivered
            observability.tag(user_id=delivery.user_id)
            self.peers.users.notify_email_delivered(
                user_pb2.NotifyEmailDeliveredRequest(delivery=delivery)
            )
        elif which == "conversion_finished":
            report = args.conversion_finished
            observability.tag(user_id=report.user_id, conversion_id=report.conversion_id)
            self.peers.users.conversion_complete(user_pb2.ConversionCompleteRequest(report=report))
        else:
            log.error("report job %s has no outcome to report", job.id)
        return None
