"""The console's pages, rendered on the server from the other services' answers (each read
through their generated clients as the operator): the overview (live job counts, health,
links), jobs (filterable, paged), a job (history, errors, Cancel and Retry), conversions and
the mailbox. Each page asks for one page of rows (PAGE_SIZE) and never counts a whole table:
the paged RPCs say whether more follow."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jinja2
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import email_pb2, job_pb2, user_pb2
from mcsv.v1.email_twirp import AsyncEmailServiceClient
from mcsv.v1.job_twirp import AsyncJobServiceClient
from mcsv.v1.user_twirp import AsyncUserServiceClient
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from internal import config, registry
from internal.services.console.health import readiness

PREFIX = "/console"
PAGE_SIZE = 50
FINAL = {"completed", "discarded", "cancelled"}
JOB_STATE_VALUES = job_pb2.JobState.DESCRIPTOR.values_by_name
CONVERSION_STATE_VALUES = user_pb2.ConversionState.DESCRIPTOR.values_by_name
JOB_STATES = [
    name.removeprefix("JOB_STATE_").lower()
    for name in JOB_STATE_VALUES
    if name != "JOB_STATE_UNSPECIFIED"
]
CONVERSION_STATES = [
    name.removeprefix("CONVERSION_STATE_").lower()
    for name in CONVERSION_STATE_VALUES
    if name != "CONVERSION_STATE_UNSPECIFIED"
]
KNOWN_QUEUES = ["emails", "conversions", "reports"]
KNOWN_ACTORS = ["deliver_email", "convert_image", "report_outcome"]


@dataclass
class Clients:
    jobs: AsyncJobServiceClient
    users: AsyncUserServiceClient
    emails: AsyncEmailServiceClient
    http: httpx.AsyncClient  # the readiness probes


def console_routes(settings: config.Settings, clients: Clients) -> list[Route]:
    """The pages, under PREFIX (operator_pages guards them)."""
    templates = jinja2.Environment(
        loader=jinja2.PackageLoader("internal.services.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    templates.filters.update(
        when=when, state=state_name, cstate=conversion_state_name, size=human_bytes
    )
    links = _links(settings)

    def render(name: str, request: Request, status: int = 200, **values: Any) -> Response:
        page = templates.get_template(name).render(
            prefix=PREFIX, links=links, path=request.url.path, **values
        )
        return HTMLResponse(page, status_code=status)

    def page(
        name: str, build: Callable[[Request], Awaitable[Mapping[str, Any]]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                values = await build(request)
            except TwirpError as exc:
                status = 404 if exc.code is ErrorCode.NOT_FOUND else 502
                if exc.code in (ErrorCode.INVALID_ARGUMENT, ErrorCode.MALFORMED):
                    status = 400
                return render("error.html", request, status=status, error=exc)
            elapsed = (time.perf_counter() - started) * 1000
            return render(name, request, elapsed_ms=round(elapsed, 1), **values)

        return endpoint

    async def overview(request: Request) -> Mapping[str, Any]:
        stats, health = await asyncio.gather(
            clients.jobs.get_queue_stats(job_pb2.GetQueueStatsRequest()),
            readiness(settings, clients.http),
        )
        return {"queues": stats.queues, "health": health, "states": JOB_STATES}

    async def jobs(request: Request) -> Mapping[str, Any]:
        query = request.query_params
        chosen = {k: query.get(k, "") for k in ("queue", "state", "actor")}
        state = _state_filter(chosen["state"], "JOB_STATE_", JOB_STATE_VALUES, "job state")
        answer = await clients.jobs.list_jobs(
            job_pb2.ListJobsRequest(
                queue=chosen["queue"],
                state=state or None,
                actor=chosen["actor"],
                page_size=PAGE_SIZE,
                page_token=query.get("page", ""),
            )
        )
        return {
            "jobs": answer.jobs,
            **_paged(query, chosen, answer.next_page_token),
            "states": JOB_STATES,
            "queues": KNOWN_QUEUES,
            "actors": KNOWN_ACTORS,
            "summary": summary,
        }

    async def job(request: Request) -> Mapping[str, Any]:
        answer = await clients.jobs.get_job(job_pb2.GetJobRequest(id=request.path_params["id"]))
        kind = answer.job.WhichOneof("args")
        args = (
            json_format.MessageToDict(getattr(answer.job, kind), preserving_proto_field_name=True)
            if kind
            else {}
        )
        current = state_name(answer.job.state)
        return {
            "job": answer.job,
            "events": answer.events,
            "args": args,
            "kind": kind,
            "final": current in FINAL,
            "may_cancel": current not in FINAL,
            "may_retry": current in ("discarded", "cancelled"),
            "event_name": event_name,
        }

    async def conversions(request: Request) -> Mapping[str, Any]:
        query = request.query_params
        chosen = {k: query.get(k, "") for k in ("state", "user_id")}
        state = _state_filter(
            chosen["state"], "CONVERSION_STATE_", CONVERSION_STATE_VALUES, "state"
        )
        answer = await clients.users.list_conversions(
            user_pb2.ListConversionsRequest(
                user_id=chosen["user_id"],
                state=state or None,
                page_size=PAGE_SIZE,
                page_token=query.get("page", ""),
            )
        )
        return {
            "conversions": answer.conversions,
            **_paged(query, chosen, answer.next_page_token),
            "states": CONVERSION_STATES,
            "page_size": page_size,
        }

    async def emails(request: Request) -> Mapping[str, Any]:
        query = request.query_params
        recipient = query.get("recipient", "")
        answer = await clients.emails.list_emails(
            email_pb2.ListEmailsRequest(
                recipient=recipient, page_size=PAGE_SIZE, page_token=query.get("page", "")
            )
        )
        return {
            "emails": answer.emails,
            **_paged(query, {"recipient": recipient}, answer.next_page_token),
            "recipient": recipient,
        }

    async def email(request: Request) -> Mapping[str, Any]:
        wanted = email_pb2.GetEmailRequest(id=request.path_params["id"])
        answer = await clients.emails.get_email(wanted)
        return {"email": answer.email}

    return [
        Route(PREFIX, page("overview.html", overview)),
        Route(f"{PREFIX}/jobs", page("jobs.html", jobs)),
        Route(f"{PREFIX}/jobs/{{id}}", page("job.html", job)),
        Route(f"{PREFIX}/conversions", page("conversions.html", conversions)),
        Route(f"{PREFIX}/emails", page("emails.html", emails)),
        Route(f"{PREFIX}/emails/{{id}}", page("email.html", email)),
    ]


def _state_filter(chosen: str, prefix: str, known: Mapping[str, Any], what: str) -> str:
    """The enum value name a state filter of the query names ("" for none); invalid_argument
    for a state the enum does not have."""
    if not chosen:
        return ""
    state = prefix + chosen.upper()
    if state not in known:
        raise TwirpError(ErrorCode.INVALID_ARGUMENT, f"no {what} {chosen!r}")
    return state


def _paged(query: Mapping[str, str], chosen: Mapping[str, str], next_page: str) -> dict[str, Any]:
    """What a list page's pager needs: the filters chosen and the links to pages."""
    return {
        "next_page": next_page,
        "first_page": bool(query.get("page")),
        "keep": _kept(chosen),
        "chosen": chosen,
    }


def _kept(filters: Mapping[str, str]) -> str:
    """The filters set, as a query string the pager's links keep."""
    return urlencode({name: value for name, value in filters.items() if value})


def _links(settings: config.Settings) -> list[tuple[str, str]]:
    """The console's links elsewhere: each service's API docs, Prometheus and Grafana when
    configured."""
    found = [(f"{name} API", f"{settings.url(name)}/docs") for name in registry.CONTRACT_NAMES]
    if settings.prometheus_url:
        found.append(("Prometheus", settings.prometheus_url))
    if settings.grafana_url:
        found.append(("Grafana", settings.grafana_url))
    return found


def when(stamp: Timestamp) -> str:
    """A timestamp as the console shows it (UTC); "" when unset."""
    if not stamp.seconds and not stamp.nanos:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp.seconds))


def state_name(value: int) -> str:
    return job_pb2.JobState.Name(value).removeprefix("JOB_STATE_").lower()


def event_name(value: int) -> str:
    return job_pb2.JobEventType.Name(value).removeprefix("JOB_EVENT_TYPE_").lower()


def conversion_state_name(value: int) -> str:
    return user_pb2.ConversionState.Name(value).removeprefix("CONVERSION_STATE_").lower()


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def summary(job: job_pb2.Job) -> str:
    """What a job is about, in a few words."""
    kind = job.WhichOneof("args")
    if kind == "email":
        return f"to {job.email.recipient}"
    if kind == "conversion":
        return f"{job.conversion.filename} for {job.conversion.user_email}"
    if kind == "report":
        which = job.report.WhichOneof("outcome") or "?"
        return which.replace("_", " ")
    return ""


def page_size(conversion: user_pb2.Conversion) -> str:
    """The PDF's page size, in points and millimetres ("" before it is converted)."""
    width, height = conversion.result.page_width_points, conversion.result.page_height_points
    if not width or not height:
        return ""
    return f"{width:.0f} x {height:.0f} pt ({width * 25.4 / 72:.0f} x {height * 25.4 / 72:.0f} mm)"
