"""What the emitters need to know about a .proto file: its comments, its services, and the
Python names under which protoc's python plugin makes its messages importable."""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

from google.protobuf.descriptor_pb2 import (
    DescriptorProto,
    EnumDescriptorProto,
    FileDescriptorProto,
    MethodDescriptorProto,
    ServiceDescriptorProto,
)

# Field numbers inside FileDescriptorProto / DescriptorProto / ServiceDescriptorProto,
# used to address elements in SourceCodeInfo location paths.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM = 2, 3, 4
_SERVICE_METHOD, _ENUM_VALUE = 2, 2


def snake_case(name: str) -> str:
    """CreateUser -> create_user, GetURLForID -> get_url_for_id; keywords get a trailing _."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    return name + "_" if keyword.iskeyword(name) else name


def docstring(text: str, indent: str) -> str:
    """A triple-quoted docstring for a proto comment, safe to embed."""
    text = text.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if text.endswith('"') and not text.endswith('\\"'):  # would run into the closing quotes
        text = text[:-1] + '\\"'
    lines = text.splitlines() or [""]
    if len(lines) == 1:
        return f'{indent}"""{lines[0]}"""\n'
    body = [f'{indent}"""{lines[0]}', *((indent + line).rstrip() for line in lines[1:])]
    return "\n".join([*body, f'{indent}"""']) + "\n"


class Comments:
    """Leading comments of a file's elements, looked up by their SourceCodeInfo path."""

    def __init__(self, file: FileDescriptorProto) -> None:
        self._by_path = {
            tuple(loc.path): _clean(loc.leading_comments)
            for loc in file.source_code_info.location
            if loc.leading_comments
        }

    def service(self, index: int) -> str:
        return self._by_path.get((_FILE_SERVICE, index), "")

    def method(self, service_index: int, index: int) -> str:
        return self._by_path.get((_FILE_SERVICE, service_index, _SERVICE_METHOD, index), "")

    def at(self, path: tuple[int, ...]) -> str:
        return self._by_path.get(path, "")


def _clean(comment: str) -> str:
    lines = comment.strip("\n").splitlines()
    return "\n".join(line[1:] if line.startswith(" ") else line for line in lines).strip()


@dataclass(frozen=True)
class Located:
    """A message or enum of some file, with the SourceCodeInfo path of its definition."""

    full_name: str  # without the leading dot, e.g. "mcsv.v1.CreateUserRequest"
    file: FileDescriptorProto
    path: tuple[int, ...]
    message: DescriptorProto | None = None
    enum: EnumDescriptorProto | None = None


class TypeIndex:
    """Every message and enum of every file in a CodeGeneratorRequest, by full name."""

    def __init__(self, files: list[FileDescriptorProto]) -> None:
        self.types: dict[str, Located] = {}
        self.comments = {f.name: Comments(f) for f in files}
        for file in files:
            prefix = file.package + "." if file.package else ""
            for i, msg in enumerate(file.message_type):
                self._add_message(file, prefix, msg, (_FILE_MESSAGE, i))
            for i, enum in enumerate(file.enum_type):
                name = prefix + enum.name
                self.types[name] = Located(name, file, (_FILE_ENUM, i), enum=enum)

    def _add_message(
        self, file: FileDescriptorProto, prefix: str, msg: DescriptorProto, path: tuple[int, ...]
    ) -> None:
        name = prefix + msg.name
        self.types[name] = Located(name, file, path, message=msg)
        for i, nested in enumerate(msg.nested_type):
            self._add_message(file, name + ".", nested, (*path, _MESSAGE_NESTED, i))
        for i, enum in enumerate(msg.enum_type):
            enum_name = f"{name}.{enum.name}"
            self.types[enum_name] = Located(enum_name, file, (*path, _MESSAGE_ENUM, i), enum=enum)

    def get(self, type_name: str) -> Located:
        return self.types[type_name.lstrip(".")]

    def comment(self, located: Located, *sub_path: int) -> str:
        return self.comments[located.file.name].at((*located.path, *sub_path))

    def field_comment(self, located: Located, field_index: int) -> str:
        return self.comment(located, _MESSAGE_FIELD, field_index)

    def value_comment(self, located: Located, value_index: int) -> str:
        return self.comment(located, _ENUM_VALUE, value_index)


def pb2_module(proto_path: str) -> str:
    """mcsv/v1/user.proto -> mcsv.v1.user_pb2 (protoc's python naming)."""
    return proto_path.removesuffix(".proto").replace("-", "_").replace("/", ".") + "_pb2"


def python_path(type_name: str, index: TypeIndex) -> tuple[str, str]:
    """The pb2 module defining a message and its attribute path there:
    .mcsv.v1.Outer.Inner -> ("mcsv.v1.user_pb2", "Outer.Inner")."""
    located = index.get(type_name)
    package = located.file.package
    local = located.full_name[len(package) + 1 :] if package else located.full_name
    return pb2_module(located.file.name), local


def route(file: FileDescriptorProto, service: ServiceDescriptorProto) -> str:
    """The Twirp name of a service: <package>.<Service>, or <Service> without a package."""
    return f"{file.package}.{service.name}" if file.package else service.name


def is_streaming(method: MethodDescriptorProto) -> bool:
    return method.client_streaming or method.server_streaming
