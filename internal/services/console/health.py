"""Every service's readiness as the console shows it: each replica's /ready, asked at once,
each for at most a short while so that the page stays quick when a service hangs. /ready is
a plain HTTP probe (what the supervisor and load balancers ask), not an RPC."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from internal import config, registry

PROBE_TIMEOUT_SECONDS = 0.8


@dataclass(frozen=True)
class Readiness:
    service: str
    url: str
    ready: bool
    detail: str  # the failing checks, or why there was no answer
    elapsed_ms: float


async def readiness(settings: config.Settings, http: httpx.AsyncClient) -> list[Readiness]:
    """Each replica of each service, in the registry's order."""
    probes = [
        _probe(http, service, url) for service in registry.NAMES for url in settings.urls(service)
    ]
    return list(await asyncio.gather(*probes))


async def _probe(http: httpx.AsyncClient, service: str, url: str) -> Readiness:
    started = time.perf_counter()

    def done(ready: bool, detail: str) -> Readiness:
        elapsed = (time.perf_counter() - started) * 1000
        return Readiness(service, url, ready, detail, round(elapsed, 1))

    try:
        answer = await http.get(f"{url}/ready", timeout=PROBE_TIMEOUT_SECONDS)
    except httpx.TimeoutException:
        return done(False, f"no answer within {PROBE_TIMEOUT_SECONDS:g}s")
    except httpx.HTTPError as exc:
        return done(False, f"unreachable: {type(exc).__name__}")
    try:
        checks = answer.json().get("checks", {})
    except ValueError:
        checks = {}
    failing = {name: problem for name, problem in checks.items() if problem}
    if answer.status_code == 200:
        return done(True, "")
    detail = "; ".join(f"{name}: {problem}" for name, problem in failing.items())
    return done(False, detail or f"HTTP {answer.status_code}")
