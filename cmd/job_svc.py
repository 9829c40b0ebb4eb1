"""Runs job_svc (see internal/services/job_svc/) on the host and port of JOB_SVC_URL."""

from internal.services.runner import serve

if __name__ == "__main__":
    serve("job_svc")
