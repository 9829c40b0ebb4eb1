"""Runs email_svc (see internal/services/email_svc/) on the host and port of EMAIL_SVC_URL."""

from internal.services.runner import serve

if __name__ == "__main__":
    serve("email_svc")
