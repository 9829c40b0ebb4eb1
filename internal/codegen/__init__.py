"""protoc-gen-mcsv-twirp: generates typed Twirp interfaces, clients and servers for Python,
and an OpenAPI description per service, from .proto services. buf runs it as a local plugin."""
