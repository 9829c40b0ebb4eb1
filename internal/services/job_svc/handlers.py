"""What a worker does for each kind of job, given the job's args: deliver an email (workflow
1) or convert an image (workflow 2) through the peer services, and report the outcome to
user_svc. Each step is idempotent, keyed by the job's idempotency key or conversion id."""

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
from internal.services.common.times import now
from internal.services.job_svc.models import CONVERSION, EMAIL, ArgsT, JobKind, JobRow

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
    """One kind of job as a worker runs it: the work, and how a failure is reported."""

    kind: JobKind[ArgsT]
    work: Callable[[JobRow, ArgsT], None]
    report_failure: Callable[[JobRow, ArgsT, str], None]


def job_handlers(peers: Peers) -> dict[str, JobHandler[Any]]:
    """The handler of each kind of job, by actor name."""
    emails, conversions = EmailJobs(peers), ConversionJobs(peers)
    handlers: list[JobHandler[Any]] = [
        JobHandler(EMAIL, emails.deliver, emails.report_failure),
        JobHandler(CONVERSION, conversions.convert, conversions.report_failure),
    ]
    return {handler.kind.actor: handler for handler in handlers}


class EmailJobs:
    """Workflow 1: the welcome email, then its delivery reported to user_svc."""

    def __init__(self, peers: Peers) -> None:
        self.peers = peers

    def deliver(self, job: JobRow, args: job_pb2.EmailJobArgs) -> None:
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
        self.report(job, args, outcome=common_pb2.OUTCOME_SUCCEEDED, email_id=delivered.email.id)

    def report_failure(self, job: JobRow, args: job_pb2.EmailJobArgs, error: str) -> None:
        self.report(job, args, outcome=common_pb2.OUTCOME_FAILED, error=error)

    def report(
        self,
        job: JobRow,
        args: job_pb2.EmailJobArgs,
        *,
        outcome: common_pb2.Outcome,
        email_id: str = "",
        error: str = "",
    ) -> None:
        self.peers.users.notify_email_delivered(
            user_pb2.NotifyEmailDeliveredRequest(
                delivery=common_pb2.EmailDelivery(
                    user_id=args.user_id,
                    recipient=args.recipient,
                    template=args.template,
                    outcome=outcome,
                    email_id=email_id,
                    error=error,
                    job_id=job.id,
                    finished_at=now(),
                )
            )
        )


class ConversionJobs:
    """Workflow 2: the PDF, the conversion-complete email, then the result reported to
    user_svc."""

    def __init__(self, peers: Peers) -> None:
        self.peers = peers

    def convert(self, job: JobRow, args: job_pb2.ConversionJobArgs) -> None:
        observability.tag(user_id=args.user_id, conversion_id=args.conversion_id)
        known = self.peers.users.get_conversion(
            user_pb2.GetConversionRequest(id=args.conversion_id)
        )
        if known.conversion.state == user_pb2.CONVERSION_STATE_SUCCEEDED:
            # Delivered again after an attempt that finished the work but died before
            # recording it: the original is gone and the PDF, email and report exist.
            log.info("conversion %s already succeeded; nothing to do", args.conversion_id)
            return
        if not known.pdf_upload_url:  # user_svc mints one only while the conversion is pending
            raise TwirpError(
                ErrorCode.FAILED_PRECONDITION,
                f"conversion {args.conversion_id} already failed: its image is removed",
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
        self.report(job, args, outcome=common_pb2.OUTCOME_SUCCEEDED, result=converted.result)

    def report_failure(self, job: JobRow, args: job_pb2.ConversionJobArgs, error: str) -> None:
        self.report(job, args, outcome=common_pb2.OUTCOME_FAILED, error=error)

    def report(
        self,
        job: JobRow,
        args: job_pb2.ConversionJobArgs,
        *,
        outcome: common_pb2.Outcome,
        result: common_pb2.ConversionResult | None = None,
        error: str = "",
    ) -> None:
        succeeded = outcome == common_pb2.OUTCOME_SUCCEEDED
        self.peers.users.conversion_complete(
            user_pb2.ConversionCompleteRequest(
                report=common_pb2.ConversionReport(
                    conversion_id=args.conversion_id,
                    user_id=args.user_id,
                    outcome=outcome,
                    pdf_url=args.pdf_download_url if succeeded else "",
                    pdf_url_expires_at=args.pdf_download_url_expires_at if succeeded else None,
                    result=result,
                    error=error,
                    job_id=job.id,
                    finished_at=now(),
                )
            )
        )
