"""client_svc: with no arguments, serves ReceiveNotification on the host and port of
CLIENT_SVC_URL; `demo` and `load` drive the workflows (see internal/services/client_svc/cli.py)."""

import sys

if __name__ == "__main__":
    if len(sys.argv) > 1:
        from internal.services.client_svc.cli import main

        sys.exit(main(sys.argv[1:]))
    from internal.services.runner import serve

    serve("client_svc")
