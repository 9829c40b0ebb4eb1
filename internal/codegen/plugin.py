"""The protoc plugin entry point: reads a CodeGeneratorRequest on stdin, writes a
CodeGeneratorResponse on stdout.

Parameters (buf.gen.yaml `opt`, comma-separated key=value):
  runtime=<python package>  where the runtime (client transports, ASGI server, errors,
                            codecs) is written and imported from. Default: <first proto
                            package segment>.twirp, e.g. mcsv.twirp for mcsv.v1; but for a
                            proto package whose first segment is itself `twirp` (twirp.x.v1)
                            it is the top-level package twirp_runtime, so that the runtime
                            never lives in a package named `twirp` (which the PyPI `twirp`
                            package also claims) and imports nothing from one.

The runtime must not be the Python package that a .proto file is generated into (their
modules would mix): such a runtime is refused and asks for the parameter.
"""

from __future__ import annotations

import sys
from importlib import resources

from google.protobuf.compiler.plugin_pb2 import CodeGeneratorRequest, CodeGeneratorResponse

from .descriptors import TypeIndex
from .openapi import openapi_documents
from .python_twirp import HEADER, client_module, server_module

_RUNTIME_FILES = (
    "__init__.py",
    "alternatives.py",
    "budget.py",
    "client.py",
    "codec.py",
    "context.py",
    "errors.py",
    "hooks.py",
    "http11.py",
    "server.py",
    "transport.py",
)
# The runtime's default name when the first proto package segment is `twirp`.
TWIRP_PACKAGE_RUNTIME = "twirp_runtime"


def generate(request: CodeGeneratorRequest) -> CodeGeneratorResponse:
    response = CodeGeneratorResponse(
        supported_features=CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    )
    try:
        files = _generate(request)
    except ValueError as exc:
        response.error = str(exc)
        return response
    for name, content in files:
        response.file.add(name=name, content=content)
    return response


def _generate(request: CodeGeneratorRequest) -> list[tuple[str, str]]:
    params = _parameters(request.parameter)
    index = TypeIndex(list(request.proto_file))
    by_name = {f.name: f for f in request.proto_file}
    targets = [by_name[name] for name in request.file_to_generate]
    with_services = [f for f in targets if f.service]
    if not with_services:
        return []
    runtime = params.pop("runtime", None)
    if not runtime:
        if not with_services[0].package:
            raise ValueError(
                f"{with_services[0].name} has no package: give the plugin the Python package "
                "for the runtime with the parameter runtime=<package>"
            )
        runtime = default_runtime(with_services[0].package)
    if params:
        raise ValueError(f"unknown plugin parameters: {', '.join(sorted(params))}")
    runtime_dir = runtime.replace(".", "/")
    if clash := sorted(f.name for f in targets if f.name.rpartition("/")[0] == runtime_dir):
        raise ValueError(
            f"the runtime package {runtime} is where {clash[0]} is generated: give the "
            "plugin another Python package for the runtime with the parameter runtime=<package>"
        )

    out: list[tuple[str, str]] = []
    for file in with_services:
        out.append(client_module(file, index, runtime))
        out.append(server_module(file, index, runtime))
        out.extend(openapi_documents(file, index))
    out.extend(_runtime_files(runtime))
    out.extend(_package_markers([name for name, _ in out]))
    return out


def default_runtime(proto_package: str) -> str:
    """The runtime's package for a proto package: <first segment>.twirp, or twirp_runtime
    when the first segment is `twirp`."""
    first = proto_package.split(".")[0]
    return TWIRP_PACKAGE_RUNTIME if first == "twirp" else f"{first}.twirp"


def _parameters(parameter: str) -> dict[str, str]:
    params = {}
    for item in filter(None, (p.strip() for p in parameter.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"plugin parameter {item!r} is not key=value")
        params[key] = value
    return params


def _runtime_files(runtime: str) -> list[tuple[str, str]]:
    """The runtime, copied from internal/codegen/runtime with a generated header."""
    directory = runtime.replace(".", "/")
    source = resources.files(__package__) / "runtime"
    header = HEADER.format(source="internal/codegen/runtime")
    return [
        (f"{directory}/{name}", header + (source / name).read_text(encoding="utf-8"))
        for name in _RUNTIME_FILES
    ]


def _package_markers(paths: list[str]) -> list[tuple[str, str]]:
    """__init__.py for every generated package directory, and a py.typed marker (PEP 561)
    in each top-level package, so that the generated code is importable and typed."""
    existing = set(paths)
    directories = {
        "/".join(parts[:i])
        for path in paths
        for parts in [path.split("/")[:-1]]
        for i in range(1, len(parts) + 1)
    }
    header = HEADER.format(source="the proto package layout")
    markers = [
        (f"{d}/__init__.py", header)
        for d in sorted(directories)
        if f"{d}/__init__.py" not in existing
    ]
    top_level = {path.split("/")[0] for path in paths if "/" in path}
    markers.extend((f"{top}/py.typed", "") for top in sorted(top_level))
    return markers


def main() -> None:
    request = CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    sys.stdout.buffer.write(generate(request).SerializeToString())


if __name__ == "__main__":
    main()
