"""Deterministic, fully populated messages for any protobuf type, so that every field of every
request and response crosses the wire in the round-trip tests."""

from __future__ import annotations

from typing import Any, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

_F = FieldDescriptor
_WELL_KNOWN = {"google.protobuf.Timestamp", "google.protobuf.Duration"}


M = TypeVar("M", bound=Message)


def sample(message_type: type[M], salt: str = "") -> M:
    message = message_type()
    _fill(message, salt, depth=0)
    return message


def _fill(message: Message, salt: str, depth: int) -> None:
    descriptor: Any = message.DESCRIPTOR  # the stubs type it as a union of two classes
    if descriptor.full_name == "google.protobuf.Timestamp":
        message.FromJsonString("2026-11-21T10:20:30.123456Z")  # type: ignore[attr-defined]
        return
    if descriptor.full_name == "google.protobuf.Duration":
        message.FromJsonString("1.5s")  # type: ignore[attr-defined]
        return
    seen_oneofs: set[str] = set()
    for index, field in enumerate(descriptor.fields, start=1):
        if field.containing_oneof is not None:
            if field.containing_oneof.name in seen_oneofs:
                continue  # set only the first member of each oneof
            seen_oneofs.add(field.containing_oneof.name)
        field_type = field.message_type
        if field_type is not None and field_type.GetOptions().map_entry:
            key_field, value_field = field_type.fields
            target = getattr(message, field.name)
            for n in (1, 2):
                key = _scalar(key_field, f"{salt}k{n}", n)
                if value_field.type == _F.TYPE_MESSAGE:
                    _fill(target[key], salt + str(n), depth + 1)
                else:
                    target[key] = _scalar(value_field, f"{salt}v{n}", n)
            continue
        if field_type is not None:
            if depth > 3 and field_type.full_name not in _WELL_KNOWN:
                continue  # deep enough for recursive types
            if _is_repeated(field):
                for n in (1, 2):
                    _fill(getattr(message, field.name).add(), f"{salt}{n}", depth + 1)
            else:
                _fill(getattr(message, field.name), salt, depth + 1)
            continue
        if _is_repeated(field):
            getattr(message, field.name).extend(
                [_scalar(field, f"{salt}{n}", index + n) for n in (1, 2)]
            )
        else:
            setattr(message, field.name, _scalar(field, salt, index))


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _scalar(field: FieldDescriptor, salt: str, n: int) -> object:
    if field.type == _F.TYPE_STRING:
        return f"{field.name}-{salt}-é✓"  # non-ASCII on purpose
    if field.type == _F.TYPE_BYTES:
        return bytes([0, 255, n % 256]) + salt.encode()
    if field.type == _F.TYPE_BOOL:
        return True
    if field.enum_type is not None:
        values = field.enum_type.values
        return values[min(len(values) - 1, 1 + n % max(1, len(values) - 1))].number
    if field.type in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        return 0.5 + n
    if field.type in (_F.TYPE_INT64, _F.TYPE_SINT64, _F.TYPE_SFIXED64):
        return -(2**53 + n)  # beyond JavaScript's safe integers: JSON must carry it as a string
    if field.type in (_F.TYPE_UINT64, _F.TYPE_FIXED64):
        return 2**63 + n
    if field.type in (_F.TYPE_INT32, _F.TYPE_SINT32, _F.TYPE_SFIXED32):
        return -n
    return n  # unsigned 32-bit
