"""Another project's code using the installed mcsv-contracts package alone (protobuf, urllib3,
aiohttp): typed sync and async clients, the Twirp error, and service implementations checked
against the generated Protocols. test_client_package.py type-checks it with mypy --strict against
the installed package and runs it with that package's venv:
    python client_usage.py <base URL of the echo server>
It prints a JSON object of what it saw. It imports nothing from this repository."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from typing import Any

import mcsv
from mcsv.twirp import Context, ErrorCode, TwirpError
from mcsv.v1 import job_pb2, user_pb2
from mcsv.v1.job_twirp import JobService
from mcsv.v1.user_twirp import AsyncUserServiceClient, UserService, UserServiceClient


def error_facts(error: TwirpError) -> dict[str, Any]:
    code: ErrorCode = error.code
    msg: str = error.msg
    meta: dict[str, str] = error.meta
    return {"code": code.value, "msg": msg, "meta": sorted(meta)}


def sync_calls(url: str) -> dict[str, Any]:
    with UserServiceClient(url, timeout=10.0) as client:
        response: user_pb2.CreateUserResponse = client.create_user(user_pb2.CreateUserRequest())
        try:
            client.create_user(user_pb2.CreateUserRequest(name="Ada"), headers={"x-id": "1"})
        except TwirpError as exc:
            error = error_facts(exc)
        else:
            error = {}
    return {
        "type": type(response).__name__,
        "is_empty": response == user_pb2.CreateUserResponse(),
        "error": error,
    }


async def async_calls(url: str) -> dict[str, Any]:
    async with AsyncUserServiceClient(url, use_json=True) as client:
        response = await client.create_user(user_pb2.CreateUserRequest())
        try:
            await client.get_user(user_pb2.GetUserRequest(), headers={"x-test-raise": "not_found"})
        except TwirpError as exc:
            error = error_facts(exc)
        else:
            error = {}
    user: user_pb2.User = response.user
    return {
        "type": type(response).__name__,
        "is_empty": response == user_pb2.CreateUserResponse(),
        "user_id": user.id,
        "error": error,
    }


class PlainUsers:
    """UserService with plain methods."""

    def create_user(
        self, ctx: Context, request: user_pb2.CreateUserRequest
    ) -> user_pb2.CreateUserResponse:
        return user_pb2.CreateUserResponse(user=user_pb2.User(name=request.name))

    def get_user(self, ctx: Context, request: user_pb2.GetUserRequest) -> user_pb2.GetUserResponse:
        return user_pb2.GetUserResponse(user=user_pb2.User(id=request.id))

    def convert_image(
        self, ctx: Context, request: user_pb2.ConvertImageRequest
    ) -> user_pb2.ConvertImageResponse:
        return user_pb2.ConvertImageResponse()

    def get_conversion(
        self, ctx: Context, request: user_pb2.GetConversionRequest
    ) -> user_pb2.GetConversionResponse:
        return user_pb2.GetConversionResponse()

    def notify_email_delivered(
        self, ctx: Context, request: user_pb2.NotifyEmailDeliveredRequest
    ) -> user_pb2.NotifyEmailDeliveredResponse:
        return user_pb2.NotifyEmailDeliveredResponse()

    def conversion_complete(
        self, ctx: Context, request: user_pb2.ConversionCompleteRequest
    ) -> user_pb2.ConversionCompleteResponse:
        return user_pb2.ConversionCompleteResponse()

    def list_conversions(
        self, ctx: Context, request: user_pb2.ListConversionsRequest
    ) -> user_pb2.ListConversionsResponse:
        return user_pb2.ListConversionsResponse()


class AsyncJobs:
    """JobService with async methods."""

    async def enqueue_email(
        self, ctx: Context, request: job_pb2.EnqueueEmailRequest
    ) -> job_pb2.EnqueueEmailResponse:
        return job_pb2.EnqueueEmailResponse()

    async def enqueue_conversion(
        self, ctx: Context, request: job_pb2.EnqueueConversionRequest
    ) -> job_pb2.EnqueueConversionResponse:
        return job_pb2.EnqueueConversionResponse()

    async def get_job(self, ctx: Context, request: job_pb2.GetJobRequest) -> job_pb2.GetJobResponse:
        return job_pb2.GetJobResponse(job=job_pb2.Job(id=request.id))

    async def list_jobs(
        self, ctx: Context, request: job_pb2.ListJobsRequest
    ) -> job_pb2.ListJobsResponse:
        return job_pb2.ListJobsResponse()

    async def cancel_job(
        self, ctx: Context, request: job_pb2.CancelJobRequest
    ) -> job_pb2.CancelJobResponse:
        return job_pb2.CancelJobResponse()

    async def retry_job(
        self, ctx: Context, request: job_pb2.RetryJobRequest
    ) -> job_pb2.RetryJobResponse:
        return job_pb2.RetryJobResponse()

    async def get_queue_stats(
        self, ctx: Context, request: job_pb2.GetQueueStatsRequest
    ) -> job_pb2.GetQueueStatsResponse:
        return job_pb2.GetQueueStatsResponse()


users: UserService = PlainUsers()
jobs: JobService = AsyncJobs()


def main(url: str) -> dict[str, Any]:
    return {
        "mcsv_file": mcsv.__file__,
        "server_runtime_importable": importlib.util.find_spec("twirp") is not None,
        "sync": sync_calls(url),
        "async": asyncio.run(async_calls(url)),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
