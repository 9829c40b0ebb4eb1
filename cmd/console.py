"""Runs the operator's console (see internal/services/console/) on the host and port of
CONSOLE_URL."""

from internal.services.runner import serve

if __name__ == "__main__":
    serve("console")
