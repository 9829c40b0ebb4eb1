"""The echo servers (tests/support/echo_app.py) in a service app, served as the services are:
service_app() (internal/services/app.py, observed) run by run(), i.e. hypercorn.

    python -m tests.support.service_process PORT
Settings (environment): MCSV_TEST_BODY_READ_TIMEOUT (seconds, default 10).
"""

from __future__ import annotations

import os
import sys

from internal.services.app import run, service_app
from tests.support.echo_app import servers


def main(port: int) -> None:
    timeout = float(os.environ.get("MCSV_TEST_BODY_READ_TIMEOUT", 10))
    run(service_app("echo_svc", servers(), body_read_timeout=timeout), "127.0.0.1", port)


if __name__ == "__main__":
    main(int(sys.argv[1]))
