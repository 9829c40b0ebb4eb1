"""Runs image_svc (see internal/services/image_svc/) on the host and port of IMAGE_SVC_URL."""

from internal.services.runner import serve

if __name__ == "__main__":
    serve("image_svc")
