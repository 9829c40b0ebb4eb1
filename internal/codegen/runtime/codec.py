"""Twirp message encodings: protobuf and JSON, with the JSON rules of the reference server.

JSON out: proto field names, every field emitted (zero values included, unset message
fields as null), int64 as strings, enums by name.
JSON in: unknown fields ignored, proto or lowerCamelCase names accepted; bytes in standard or
URL-safe base64, padded or not, and nothing else (as Go's protojson: json_format alone drops
characters outside the alphabet).
An empty protobuf body is the empty message.

A server also refuses enum values its contract does not know (decode(known_enums_only=True)),
as invalid_argument naming the field; a client keeps them, so that a newer server can add
values.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from .errors import ErrorCode, TwirpError

PROTOBUF = "application/protobuf"
JSON = "application/json"
CONTENT_TYPES = (PROTOBUF, JSON)

M = TypeVar("M", bound=Message)
# A message Descriptor: protobuf's stubs type Message.DESCRIPTOR as one of two classes.
AnyDescriptor = Any


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


def decode(
    body: bytes | bytearray,
    message_type: type[M],
    content_type: str,
    *,
    known_enums_only: bool = False,
) -> M:
    """Decodes a body; an undecodable one raises TwirpError(malformed). With known_enums_only,
    an enum value (at any depth) that the message's contract does not define raises
    TwirpError(invalid_argument) with the field's path in meta "argument"."""
    message = message_type()
    unknown_name: _UnknownEnum | None = None
    try:
        if content_type == JSON:
            value = json.loads(body.decode("utf-8"))
            if not isinstance(value, dict):
                raise json_format.ParseError(f"expected a JSON object, got {type(value).__name__}")
            checked = _JsonCheck()
            checked.message(value, message.DESCRIPTOR, "")
            if checked.bad_bytes is not None:
                raise json_format.ParseError(
                    f"{checked.bad_bytes}: invalid base64 in a bytes field"
                )
            json_format.ParseDict(value, message, ignore_unknown_fields=True)
            unknown_name = checked.unknown_enum
        else:
            message.ParseFromString(body)  # type: ignore[arg-type]  # any buffer will do
    # SystemError: protobuf's C parser fails that way on a JSON string holding a lone
    # surrogate ("\ud800"), valid JSON text but no Unicode string.
    except (json_format.ParseError, DecodeError, ValueError, RecursionError, SystemError) as exc:
        kind = "json" if content_type == JSON else "protobuf"
        raise TwirpError(
            ErrorCode.MALFORMED, f"the {kind} message could not be decoded: {exc}"
        ) from exc
    if known_enums_only:
        unknown = unknown_name or unknown_enum(message)
        if unknown is not None:
            raise unknown.error()
    return message


class _UnknownEnum:
    def __init__(self, path: str, value: object, enum: EnumDescriptor) -> None:
        self.path, self.value, self.enum = path, value, enum

    def error(self) -> TwirpError:
        return TwirpError(
            ErrorCode.INVALID_ARGUMENT,
            f"{self.path}: {json.dumps(self.value)} is not a value of {self.enum.full_name}",
            {"argument": self.path},
        )


def unknown_enum(message: Message, path: str = "") -> _UnknownEnum | None:
    """The first enum value in a decoded message, at any depth, that its enum does not
    define (proto3 enums are open: the parser keeps unknown numbers), or None."""
    if not _has_enums(message.DESCRIPTOR):
        return None
    for field, value in message.ListFields():
        if field.enum_type is None and (
            field.message_type is None or not _has_enums(field.message_type)
        ):
            continue  # no enum in or below this field
        where = f"{path}.{field.name}" if path else field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            items = ((f"{where}[{_map_key(k)}]", v) for k, v in value.items())
            found = _first_unknown(value_field, items)
        elif field.is_repeated:
            found = _first_unknown(field, ((f"{where}[{i}]", v) for i, v in enumerate(value)))
        else:
            found = _first_unknown(field, [(where, value)])
        if found is not None:
            return found
    return None


def _first_unknown(
    field: FieldDescriptor, values: Iterable[tuple[str, Any]]
) -> _UnknownEnum | None:
    enum, message_type = field.enum_type, field.message_type
    if enum is None and (message_type is None or not _has_enums(message_type)):
        return None
    for where, value in values:
        if enum is not None:
            if value not in enum.values_by_number:
                return _UnknownEnum(where, value, enum)
        elif (found := unknown_enum(value, where)) is not None:
            return found
    return None


_HAS_ENUMS: dict[str, bool] = {}


def _has_enums(descriptor: AnyDescriptor) -> bool:
    """Whether a message type has an enum field at any depth (cached by full name)."""
    name = descriptor.full_name
    if name not in _HAS_ENUMS:
        seen, pending = {name}, [descriptor]
        found = False
        while pending and not found:
            for field in pending.pop().fields:
                if field.enum_type is not None:
                    found = True
                elif field.message_type is not None and field.message_type.full_name not in seen:
                    seen.add(field.message_type.full_name)
                    pending.append(field.message_type)
        _HAS_ENUMS[name] = found
    return _HAS_ENUMS[name]


def _map_key(key: object) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return json.dumps(key) if isinstance(key, str) else str(key)


class _JsonCheck:
    """What json_format lets through in a JSON request: bytes fields that are not base64 and
    (ignored with unknown fields) enum names that do not exist. Walks the JSON value beside
    the message type, before json_format, looking only at values of the expected JSON type:
    json_format refuses the other shapes."""

    def __init__(self) -> None:
        self.bad_bytes: str | None = None
        self.unknown_enum: _UnknownEnum | None = None

    def message(self, value: object, descriptor: AnyDescriptor, path: str) -> None:
        if not isinstance(value, dict):
            return
        for key, item in value.items():
            field = descriptor.fields_by_name.get(key) or _by_json_name(descriptor).get(key)
            if field is None or item is None:
                continue
            where = f"{path}.{field.name}" if path else field.name
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                key_field = field.message_type.fields_by_name["key"]
                value_field = field.message_type.fields_by_name["value"]
                quoted = key_field.type == FieldDescriptor.TYPE_STRING
                if isinstance(item, dict):
                    for map_key, map_value in item.items():
                        shown = json.dumps(map_key) if quoted else str(map_key)
                        self.value(map_value, value_field, f"{where}[{shown}]")
            elif field.is_repeated:
                if isinstance(item, list):
                    for index, element in enumerate(item):
                        self.value(element, field, f"{where}[{index}]")
            else:
                self.value(item, field, where)

    def value(self, value: object, field: FieldDescriptor, path: str) -> None:
        if field.type == FieldDescriptor.TYPE_BYTES or (
            field.message_type is not None
            and field.message_type.full_name == "google.protobuf.BytesValue"
        ):
            if isinstance(value, str) and not _is_base64(value) and self.bad_bytes is None:
                self.bad_bytes = path
        elif field.enum_type is not None:
            if (
                isinstance(value, str)
                and value not in field.enum_type.values_by_name
                and not _is_integer(value)
                and self.unknown_enum is None
            ):
                self.unknown_enum = _UnknownEnum(path, value, field.enum_type)
        elif field.message_type is not None and _is_object(field.message_type.full_name):
            self.message(value, field.message_type, path)


def _by_json_name(descriptor: AnyDescriptor) -> dict[str, FieldDescriptor]:
    return {f.json_name: f for f in descriptor.fields}


def _is_integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


_URL_SAFE = str.maketrans("-_", "+/")


def _is_base64(text: str) -> bool:
    """Whether a JSON bytes value decodes as Go's protojson decodes it: standard or URL-safe
    alphabet (not both), with correct padding or none at all."""
    if "-" in text or "_" in text:
        if "+" in text or "/" in text:
            return False
        text = text.translate(_URL_SAFE)
    if len(text) % 4:
        if "=" in text:
            return False
        text += "=" * (-len(text) % 4)
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


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
