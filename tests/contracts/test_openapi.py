"""gen/mcsv/v1/*.openapi.json: valid OpenAPI 3.1, one document per service covering exactly
its RPCs with their request and response messages, every $ref resolving, and every message
schema listing exactly the message's fields (by proto name, as the JSON encoding does)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, ServiceDescriptor
from mcsv.twirp import codec
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from internal.codegen.descriptors import snake_case
from tests.codegen.helpers import ROOT
from tests.rpc.catalog import RPCS, Rpc
from tests.support.samples import sample

GENERATED = ROOT / "gen" / "mcsv" / "v1"
DOCUMENTS = sorted(GENERATED.glob("*.openapi.json"))
SCHEMAS = "#/components/schemas/"


def services() -> dict[str, ServiceDescriptor]:
    """Every service of the generated protobuf modules, by full name."""
    found: dict[str, ServiceDescriptor] = {}
    for module_path in sorted(GENERATED.glob("*_pb2.py")):
        module = importlib.import_module(f"mcsv.v1.{module_path.stem}")
        for service in module.DESCRIPTOR.services_by_name.values():
            found[service.full_name] = service
    return found


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(document: dict[str, Any], ref: str) -> Any:
    """A local JSON pointer (#/a/b) in the document; KeyError when it points nowhere."""
    assert ref.startswith("#/"), f"not a local reference: {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def body_schema(content: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = content["application/json"]["schema"]
    return schema


def expected_schema(message: Descriptor) -> dict[str, Any]:
    """How a body of this message is described: a reference, or a well-known type inline."""
    if message.full_name == "google.protobuf.Empty":
        return {"type": "object"}
    return {"$ref": SCHEMAS + message.full_name}


def test_there_is_one_document_per_service() -> None:
    titles = sorted(load(path)["info"]["title"] for path in DOCUMENTS)
    assert titles == sorted(services())


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_document_is_valid_openapi_3_1(path: Path) -> None:
    document = load(path)
    assert document["openapi"] == "3.1.0"
    validate(document, cls=OpenAPIV31SpecValidator)  # raises on the first error


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_document_covers_every_rpc(path: Path) -> None:
    document = load(path)
    service = services()[document["info"]["title"]]
    operations = {f"/twirp/{service.full_name}/{method.name}": method for method in service.methods}
    assert set(document["paths"]) == set(operations)
    for route, method in operations.items():
        post = document["paths"][route]["post"]
        assert post["operationId"] == method.name
        assert body_schema(post["requestBody"]["content"]) == expected_schema(method.input_type)
        assert body_schema(post["responses"]["200"]["content"]) == expected_schema(
            method.output_type
        )
        assert post["requestBody"]["content"]["application/protobuf"]["schema"] == {
            "type": "string",
            "format": "binary",
        }
        error = post["responses"]["default"]["content"]["application/json"]["schema"]
        assert error == {"$ref": SCHEMAS + "TwirpError"}


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_every_ref_resolves(path: Path) -> None:
    document = load(path)
    found = sorted(set(refs(document)))
    assert found, "no $ref at all"
    unresolved = []
    for ref in found:
        try:
            target = resolve(document, ref)
        except (KeyError, TypeError):
            unresolved.append(ref)
        else:
            assert isinstance(target, dict) and target, f"{ref} resolves to {target!r}"
    assert not unresolved, unresolved


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_message_schemas_list_the_fields(path: Path) -> None:
    document = load(path)
    schemas = document["components"]["schemas"]
    service = services()[document["info"]["title"]]
    pool = service.file.pool
    assert "TwirpError" in schemas
    for name, schema in schemas.items():
        if name == "TwirpError":
            continue
        try:
            message = pool.FindMessageTypeByName(name)
        except KeyError:
            enum = pool.FindEnumTypeByName(name)
            assert schema["type"] == "string"
            assert schema["enum"] == [value.name for value in enum.values], name
            continue
        assert schema["type"] == "object"
        assert list(schema["properties"]) == [field.name for field in message.fields], name


@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_the_servers_json_answers_match_the_documented_schemas(rpc: Rpc) -> None:
    """What TwirpApp actually writes (sample and empty messages, nulls for unset messages,
    int64 as strings, enum names) validates against the document's schemas, both ways."""
    document = load(GENERATED / f"{snake_case(rpc.service)}.openapi.json")
    post = document["paths"][rpc.path]["post"]
    for message, schema in [
        (rpc.request_type, body_schema(post["requestBody"]["content"])),
        (rpc.response_type, body_schema(post["responses"]["200"]["content"])),
    ]:
        validator = OAS31Validator(
            {**schema, "components": document["components"]}, format_checker=oas31_format_checker
        )
        for instance in (sample(message), message()):
            validator.validate(json.loads(codec.encode(instance, codec.JSON)))
