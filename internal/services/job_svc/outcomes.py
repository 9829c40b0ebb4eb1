"""What user_svc is told when an email or conversion job ends: its outcome as a report job's
args (ReportJobArgs), succeeded, failed or cancelled.

The store stamps each report with the job event that decided it (its sequence is the
report's version) when it records that event, and enqueues the report as a job of its own in
the same transaction, so no outcome is lost and a later one always has a higher version."""

from __future__ import annotations

from mcsv.v1 import common_pb2, job_pb2

from internal.services.job_svc.models import CONVERSION, EMAIL, JobRow


def email_succeeded(
    job: JobRow, args: job_pb2.EmailJobArgs, email_id: str
) -> job_pb2.ReportJobArgs:
    report = _email(job, args, common_pb2.OUTCOME_SUCCEEDED)
    report.email_delivered.email_id = email_id
    return report


def conversion_succeeded(
    job: JobRow, args: job_pb2.ConversionJobArgs, result: common_pb2.ConversionResult
) -> job_pb2.ReportJobArgs:
    report = _conversion(job, args, common_pb2.OUTCOME_SUCCEEDED)
    finished = report.conversion_finished
    finished.pdf_url = args.pdf_download_url
    finished.pdf_url_expires_at.CopyFrom(args.pdf_download_url_expires_at)
    finished.result.CopyFrom(result)
    return report


def ended(job: JobRow, outcome: common_pb2.Outcome, error: str) -> job_pb2.ReportJobArgs | None:
    """The report of a job that failed for good or was cancelled; None for a kind of job
    nobody is told about (a report job itself)."""
    if job.actor == EMAIL.actor:
        report = _email(job, EMAIL.parse_args(job.args), outcome)
        report.email_delivered.error = error
        return report
    if job.actor == CONVERSION.actor:
        report = _conversion(job, CONVERSION.parse_args(job.args), outcome)
        report.conversion_finished.error = error
        return report
    return None


def stamped(report: job_pb2.ReportJobArgs, version: int, at: float) -> job_pb2.ReportJobArgs:
    """The report with its version and finish time."""
    copy = job_pb2.ReportJobArgs()
    copy.CopyFrom(report)
    event = (
        copy.email_delivered
        if copy.WhichOneof("outcome") == "email_delivered"
        else copy.conversion_finished
    )
    event.version = version
    event.finished_at.FromNanoseconds(int(at * 1e9))
    return copy


def report_key(job: JobRow, version: int) -> str:
    """The idempotency key of a job's report: one report job per outcome."""
    return f"report:{job.id}:{version}"


def _email(
    job: JobRow, args: job_pb2.EmailJobArgs, outcome: common_pb2.Outcome
) -> job_pb2.ReportJobArgs:
    return job_pb2.ReportJobArgs(
        email_delivered=common_pb2.EmailDelivery(
            user_id=args.user_id,
            recipient=args.recipient,
            template=args.template,
            outcome=outcome,
            job_id=job.id,
        )
    )


def _conversion(
    job: JobRow, args: job_pb2.ConversionJobArgs, outcome: common_pb2.Outcome
) -> job_pb2.ReportJobArgs:
    return job_pb2.ReportJobArgs(
        conversion_finished=common_pb2.ConversionReport(
            conversion_id=args.conversion_id,
            user_id=args.user_id,
            outcome=outcome,
            job_id=job.id,
        )
    )
