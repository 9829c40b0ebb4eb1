"""Each service's /docs document (internal/services/common/docs.py): the generated OpenAPI
plus this service as its server, the bearer scheme and the allow-list's callers, still valid
OpenAPI 3.1, so that Swagger UI's "Try it out" POSTs Twirp JSON to the running service with
the credential entered under Authorize."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from internal import registry
from internal.auth import policy
from internal.services.common.docs import SCHEME, openapi_document, served_document


@pytest.mark.parametrize("service", registry.CONTRACT_NAMES)
def test_the_served_document_is_valid_and_says_where_and_how_to_call(service: str) -> None:
    generated = openapi_document(service)
    assert generated is not None
    served = served_document(generated)
    validate(served)
    assert served["servers"] == [{"url": "/", "description": "this service (Twirp JSON)"}]
    scheme = served["components"]["securitySchemes"][SCHEME]
    assert scheme == {"type": "http", "scheme": "bearer", "description": scheme["description"]}
    for path, operations in served["paths"].items():
        assert path.startswith("/twirp/mcsv.v1.")
        (operation,) = operations.values()
        assert list(operations) == ["post"]
        assert "application/json" in operation["requestBody"]["content"]
        grants = policy.ALLOWED[path.removeprefix("/twirp/")]
        if policy.PUBLIC in grants:
            assert operation["security"] == []
        else:
            assert operation["security"] == [{SCHEME: []}]
            assert all(grant in operation["description"] for grant in grants)
    assert "servers" not in generated  # the generated file is left as it was


def test_the_console_has_no_contract_and_no_docs_of_its_own() -> None:
    assert openapi_document("console") is None
