"""The callers' side: what a process sends as its credential. A service sends a fresh
service token per call, minted for the called service and cached until a third of its
lifetime is left; the operator (the CLI, the tests) sends OPERATOR_TOKEN."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from internal import config
from internal.auth import tokens
from internal.auth.policy import OPERATOR


class ServiceTokens:
    """Service tokens of `caller`, one cached per called service; thread-safe."""

    def __init__(self, settings: config.Settings, caller: str) -> None:
        self.settings = settings
        self.caller = caller
        self._lock = threading.Lock()
        self._cached: dict[str, tuple[str, float]] = {}  # audience: (token, renew after)

    def token(self, audience: str) -> str:
        now = time.time()
        with self._lock:
            cached = self._cached.get(audience)
            if cached is not None and now < cached[1]:
                return cached[0]
            minted = tokens.service_token(self.settings, self.caller, audience, now)
            self._cached[audience] = (minted, now + self.settings.service_token_ttl_seconds * 2 / 3)
            return minted


def credentials_for(
    settings: config.Settings, identity: str
) -> Callable[[str], str | Callable[[], str]]:
    """For a process calling as `identity` (a service name, or OPERATOR): the credentials to
    give the generated client of each called service."""
    if identity == OPERATOR:
        return lambda _service: settings.operator_token
    service_tokens = ServiceTokens(settings, identity)
    return lambda service: lambda: service_tokens.token(service)
