"""Readiness checks behind /ready. A check is a blocking probe that returns when its dependency
is usable and raises when it is not. Probes run in a worker thread under a time limit: a
database that hangs makes the service report not ready, instead of stalling its event loop
(where the time limit could never fire)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import peewee

# Returns when the dependency is usable; raises (anything) when it is not.
ReadyProbe = Callable[[], object]
READY_TIMEOUT_SECONDS = 5.0


def database_probe(database: peewee.Database, model: type[peewee.Model]) -> ReadyProbe:
    """Reads one row of a service's table: the database answers and the schema is there."""

    def probe() -> None:
        with database.connection_context():
            model.select().limit(1).execute()

    return probe


async def run_probe(probe: ReadyProbe, timeout: float) -> str | None:
    """None when the probe passed within `timeout` seconds, else what went wrong."""
    try:
        await asyncio.wait_for(asyncio.to_thread(probe), timeout=timeout)
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except Exception as exc:  # a readiness probe reports, it does not fail
        return f"{type(exc).__name__}: {exc}"
    return None
