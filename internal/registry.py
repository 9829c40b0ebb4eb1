"""The system's services, listed once: each one's name, default port and log colour. Settings,
the supervisor, the runner's app table, the peers and the tests all read this list. It imports
nothing of the project, so that the lowest layer (internal.config) can read it too."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceEntry:
    name: str  # also the name of its package in internal/services and its script in cmd/
    default_port: int  # of its default URL, http://127.0.0.1:<port>
    log_colour: int  # ANSI colour of its lines' prefix when `just up` writes to a terminal
    # Whether it serves a Twirp contract of its own (proto/mcsv/v1, a generated client). The
    # operator's console does not: it is a web front end over the others' RPCs.
    contract: bool = True

    @property
    def url_variable(self) -> str:
        """The environment variable holding its URL(s): user_svc -> USER_SVC_URL."""
        return f"{self.name.upper()}_URL"


SERVICES = (
    ServiceEntry("client_svc", 4000, 36),
    ServiceEntry("user_svc", 8081, 32),
    ServiceEntry("job_svc", 8082, 33),
    ServiceEntry("email_svc", 8083, 35),
    ServiceEntry("image_svc", 8084, 34),
    ServiceEntry("console", 8085, 37, contract=False),
)
NAMES = tuple(service.name for service in SERVICES)
# The services with a Twirp contract (a generated client; see ServiceEntry.contract).
CONTRACT_NAMES = tuple(service.name for service in SERVICES if service.contract)
BY_NAME = {service.name: service for service in SERVICES}
