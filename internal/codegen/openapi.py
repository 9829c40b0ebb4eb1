"""Emits an OpenAPI 3.1 description of each service's Twirp routes: one POST path per RPC,
JSON and protobuf bodies, the Twirp error object, and schemas for every message reached,
following the JSON encoding our servers speak (proto field names, int64 as strings, enums by
name)."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.descriptor_pb2 import FieldDescriptorProto, FileDescriptorProto

from .descriptors import Located, TypeIndex, route, snake_case

_T = FieldDescriptorProto
_SCALARS: dict[int, dict[str, Any]] = {
    _T.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _T.TYPE_FLOAT: {"type": "number", "format": "float"},
    _T.TYPE_INT32: {"type": "integer", "format": "int32"},
    _T.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _T.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _T.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    _T.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    _T.TYPE_INT64: {"type": "string", "format": "int64"},
    _T.TYPE_SINT64: {"type": "string", "format": "int64"},
    _T.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    _T.TYPE_UINT64: {"type": "string", "format": "uint64"},
    _T.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    _T.TYPE_BOOL: {"type": "boolean"},
    _T.TYPE_STRING: {"type": "string"},
    _T.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}

# Well-known types have their own JSON forms.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?\d+(\.\d+)?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
    **{
        f"google.protobuf.{wrapper}": {**schema, "type": [schema["type"], "null"]}
        for wrapper, schema in {
            "DoubleValue": {"type": "number"},
            "FloatValue": {"type": "number"},
            "Int64Value": {"type": "string", "format": "int64"},
            "UInt64Value": {"type": "string", "format": "uint64"},
            "Int32Value": {"type": "integer", "format": "int32"},
            "UInt32Value": {"type": "integer", "format": "int64"},
            "BoolValue": {"type": "boolean"},
            "StringValue": {"type": "string"},
            "BytesValue": {"type": "string", "contentEncoding": "base64"},
        }.items()
    },
}

_ERROR_CODES = [
    "canceled", "unknown", "invalid_argument", "malformed", "deadline_exceeded", "not_found",
    "bad_route", "already_exists", "permission_denied", "unauthenticated", "resource_exhausted",
    "failed_precondition", "aborted", "out_of_range", "unimplemented", "internal", "unavailable",
    "data_loss",
]  # fmt: skip

_TWIRP_ERROR = {
    "type": "object",
    "description": "A Twirp error; always JSON, whatever the request's Content-Type.",
    "required": ["code", "msg"],
    "properties": {
        "code": {"type": "string", "enum": _ERROR_CODES},
        "msg": {"type": "string"},
        "meta": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


_PROTOCOL_NOTE = "Twirp v7: POST, Content-Type application/protobuf or application/json."


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


class _Schemas:
    def __init__(self, index: TypeIndex) -> None:
        self.index = index
        self.schemas: dict[str, Any] = {}

    def reach(self, type_name: str) -> dict[str, Any]:
        """A schema reference for a message or enum, adding it and what it reaches."""
        located = self.index.get(type_name)
        if located.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[located.full_name])
        if located.full_name not in self.schemas:
            self.schemas[located.full_name] = {}  # placeholder: recursive types stop here
            self.schemas[located.full_name] = (
                self._message(located) if located.message else self._enum(located)
            )
        return _ref(located.full_name)

    def _enum(self, located: Located) -> dict[str, Any]:
        assert located.enum is not None
        values = [v.name for v in located.enum.value]
        lines = [
            f"- {v.name}: {c}"
            for i, v in enumerate(located.enum.value)
            if (c := self.index.value_comment(located, i).replace("\n", " "))
        ]
        description = "\n".join(filter(None, [self.index.comment(located), *lines]))
        return {
            "type": "string",
            "enum": values,
            **({"description": description} if description else {}),
        }

    def _message(self, located: Located) -> dict[str, Any]:
        assert located.message is not None
        oneofs = [o.name for o in located.message.oneof_decl]
        properties: dict[str, Any] = {}
        for i, field in enumerate(located.message.field):
            schema = self._field(field)
            in_oneof = field.HasField("oneof_index") and not field.proto3_optional
            singular = field.label != _T.LABEL_REPEATED
            if singular and field.type == _T.TYPE_MESSAGE and not in_oneof:
                schema = {"anyOf": [schema, {"type": "null"}]}  # unset messages are written as null
            notes = [self.index.field_comment(located, i)]
            if in_oneof:
                notes.append(f"At most one field of oneof `{oneofs[field.oneof_index]}` is set.")
            if description := "\n\n".join(filter(None, notes)):
                schema = {**schema, "description": description}
            properties[field.name] = schema
        out: dict[str, Any] = {"type": "object", "properties": properties}
        if comment := self.index.comment(located):
            out["description"] = comment
        return out

    def _field(self, field: FieldDescriptorProto) -> dict[str, Any]:
        if field.type in (_T.TYPE_MESSAGE, _T.TYPE_ENUM):
            entry = self.index.get(field.type_name).message
            if entry is not None and entry.options.map_entry:
                value = self._field(entry.field[1])
                return {"type": "object", "additionalProperties": value}
            item = self.reach(field.type_name)
        else:
            item = dict(_SCALARS[field.type])
        if field.label == _T.LABEL_REPEATED:
            return {"type": "array", "items": item}
        return item


def openapi_documents(file: FileDescriptorProto, index: TypeIndex) -> list[tuple[str, str]]:
    """(path, content) of one <service>.openapi.json per service of the file."""
    directory = file.name.rsplit("/", 1)[0] + "/" if "/" in file.name else ""
    comments = index.comments[file.name]
    documents = []
    for s_index, service in enumerate(file.service):
        schemas = _Schemas(index)
        paths: dict[str, Any] = {}
        for m_index, method in enumerate(service.method):
            request, response = schemas.reach(method.input_type), schemas.reach(method.output_type)
            comment = comments.method(s_index, m_index)
            paths[f"/twirp/{route(file, service)}/{method.name}"] = {
                "post": {
                    "operationId": method.name,
                    "summary": comment.split("\n\n")[0].replace("\n", " ")
                    if comment
                    else method.name,
                    **({"description": comment} if comment else {}),
                    "requestBody": {"required": True, "content": _bodies(request)},
                    "responses": {
                        "200": {"description": "OK", "content": _bodies(response)},
                        "default": {
                            "description": "Twirp error",
                            "content": {"application/json": {"schema": _ref("TwirpError")}},
                        },
                    },
                }
            }
        document = {
            "openapi": "3.1.0",
            "info": {
                "title": route(file, service),
                "version": file.package.rsplit(".", 1)[-1] if file.package else "0",
                "description": "\n\n".join(
                    filter(None, [comments.service(s_index), _PROTOCOL_NOTE])
                ),
            },
            "paths": paths,
            "components": {
                "schemas": {**dict(sorted(schemas.schemas.items())), "TwirpError": _TWIRP_ERROR}
            },
        }
        documents.append(
            (
                f"{directory}{snake_case(service.name)}.openapi.json",
                json.dumps(document, indent=2) + "\n",
            )
        )
    return documents


def _bodies(json_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "application/json": {"schema": json_schema},
        "application/protobuf": {"schema": {"type": "string", "format": "binary"}},
    }
