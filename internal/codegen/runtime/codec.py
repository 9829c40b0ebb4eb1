"""Twirp message encodings: protobuf and JSON, with the JSON rules of the reference server.

JSON out: proto field names, every field emitted (zero values included, unset message
fields as null), int64 as strings, enums by name.
JSON in: unknown fields ignored, proto or lowerCamelCase names accepted.
An empty protobuf body is the empty message.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from .errors import ErrorCode, TwirpError

PROTOBUF = "application/protobuf"
JSON = "application/json"
CONTENT_TYPES = (PROTOBUF, JSON)

M = TypeVar("M", bound=Message)


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, parameters stripped and lower-cased:
    'application/json; charset=utf-8' -> 'application/json'."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def encode(message: Message, content_type: str) -> bytes:
    if content_type == JSON:
        as_dict = json_format.MessageToDict(
            message,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        _emit_unset_messages(message, as_dict)
        return json.dumps(as_dict, separators=(",", ":"), ensure_ascii=False).encode()
    return message.SerializeToString()


def decode(body: bytes, message_type: type[M], content_type: str) -> M:
    """Decodes a body; an undecodable one raises TwirpError(malformed)."""
    message = message_type()
    try:
        if content_type == JSON:
            value = json.loads(body.decode("utf-8"))
            if not isinstance(value, dict):
                raise json_format.ParseError(f"expected a JSON object, got {type(value).__name__}")
            json_format.ParseDict(value, message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(body)
    except (json_format.ParseError, DecodeError, ValueError, RecursionError) as exc:
        kind = "json" if content_type == JSON else "protobuf"
        raise TwirpError(
            ErrorCode.MALFORMED, f"the {kind} message could not be decoded: {exc}"
        ) from exc
    return message


def _emit_unset_messages(message: Message, as_dict: dict[str, Any]) -> None:
    """Adds null for unset singular message fields outside oneofs, as the reference server's
    JSON (protojson with EmitUnpopulated) does; json_format leaves them out."""
    fields = message.DESCRIPTOR.fields
    for field in fields:
        field_type = field.message_type
        if field_type is None:  # a scalar or enum field
            continue
        if field.name not in as_dict:
            if not field.is_repeated and field.containing_oneof is None:
                as_dict[field.name] = None
            continue
        value, value_dict = getattr(message, field.name), as_dict[field.name]
        if field_type.GetOptions().map_entry:
            value_type = field_type.fields_by_name["value"].message_type
            if value_type is not None and _is_object(value_type.full_name):
                for key, item in value.items():
                    json_key = str(key).lower() if isinstance(key, bool) else str(key)
                    _emit_unset_messages(item, value_dict[json_key])
        elif not _is_object(field_type.full_name):
            continue
        elif field.is_repeated:
            for item, item_dict in zip(value, value_dict, strict=True):
                _emit_unset_messages(item, item_dict)
        else:
            _emit_unset_messages(value, value_dict)
    in_field_order = {f.name: as_dict[f.name] for f in fields if f.name in as_dict}
    as_dict.clear()
    as_dict.update(in_field_order)


def _is_object(message_name: str) -> bool:
    """Whether a message is a JSON object (well-known types have JSON forms of their own)."""
    return not message_name.startswith("google.protobuf.")
