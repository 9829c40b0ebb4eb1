"""The job RPCs the console's scripts call, at the console's own origin: the live counts,
and the Cancel and Retry buttons. They are JobService's own Twirp JSON RPCs, served here by
the generated JobServiceServer over an implementation that forwards each call through
job_svc's generated client with OPERATOR_TOKEN. So the browser never holds the token (its
session cookie is HttpOnly), job_svc needs no CORS, and job_svc's answers and errors reach
the page unchanged.

Only a signed-in operator may call them (the session cookie, or the bearer token), and only
from the console's own pages: a request whose Origin is another site is refused (the
SameSite=Strict cookie and Twirp's JSON content type already keep cross-site forms out).
Enqueueing stays user_svc's: refused here."""

from __future__ import annotations

from urllib.parse import urlsplit

from mcsv.twirp import Context, ErrorCode, ServerContext, ServerHooks, TwirpError
from mcsv.v1 import job_pb2
from mcsv.v1.job_twirp import AsyncJobServiceClient

from internal import config
from internal.auth.pages import is_operator


class JobRelay:
    """JobService, forwarded to job_svc as the operator (see the module docstring)."""

    def __init__(self, jobs: AsyncJobServiceClient) -> None:
        self.jobs = jobs

    def enqueue_email(
        self, ctx: Context, request: job_pb2.EnqueueEmailRequest
    ) -> job_pb2.EnqueueEmailResponse:
        raise _not_here("EnqueueEmail")

    def enqueue_conversion(
        self, ctx: Context, request: job_pb2.EnqueueConversionRequest
    ) -> job_pb2.EnqueueConversionResponse:
        raise _not_here("EnqueueConversion")

    async def get_job(self, ctx: Context, request: job_pb2.GetJobRequest) -> job_pb2.GetJobResponse:
        return await self.jobs.get_job(request)

    async def list_jobs(
        self, ctx: Context, request: job_pb2.ListJobsRequest
    ) -> job_pb2.ListJobsResponse:
        return await self.jobs.list_jobs(request)

    async def cancel_job(
        self, ctx: Context, request: job_pb2.CancelJobRequest
    ) -> job_pb2.CancelJobResponse:
        if not request.reason:
            request.reason = "cancelled by the operator in the console"
        return await self.jobs.cancel_job(request)

    async def retry_job(
        self, ctx: Context, request: job_pb2.RetryJobRequest
    ) -> job_pb2.RetryJobResponse:
        return await self.jobs.retry_job(request)

    async def get_queue_stats(
        self, ctx: Context, request: job_pb2.GetQueueStatsRequest
    ) -> job_pb2.GetQueueStatsResponse:
        return await self.jobs.get_queue_stats(request)


class ConsoleSession(ServerHooks):
    """Admits the signed-in operator, from the console's own origin only."""

    def __init__(self, settings: config.Settings) -> None:
        self.settings = settings

    def request_routed(self, ctx: ServerContext) -> None:
        if not is_operator(self.settings, ctx.headers):
            raise TwirpError(ErrorCode.UNAUTHENTICATED, "sign in to the console first")
        origin = ctx.headers.get("origin", "")
        if origin and urlsplit(origin).netloc != ctx.headers.get("host", ""):
            raise TwirpError(ErrorCode.PERMISSION_DENIED, "only the console's own pages may call")


def _not_here(method: str) -> TwirpError:
    return TwirpError(ErrorCode.PERMISSION_DENIED, f"the console does not relay {method}")
