"""Runs user_svc (see internal/services/user_svc/) on the host and port of USER_SVC_URL."""

from internal.services.runner import serve

if __name__ == "__main__":
    serve("user_svc")
