"""The echo servers (tests/support/echo_app.py) in a service app, served as the services are:
service_app() (internal/services/common/app.py, observed) run by run(), i.e. uvicorn, with
the settings from the environment (RPC_BODY_TIMEOUT_SECONDS, ...).

    python -m tests.support.service_process PORT
"""

from __future__ import annotations

import sys

from internal import config
from internal.services.common.app import run, service_app
from tests.support.echo_app import servers


def main(port: int) -> None:
    run(service_app("echo_svc", config.load(), servers()), "127.0.0.1", port)


if __name__ == "__main__":
    main(int(sys.argv[1]))
