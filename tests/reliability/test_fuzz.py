"""schemathesis against openapi.yaml and the running API (gunicorn, real Redis, keys on): a
bounded number of generated requests per operation, no server error, and every answer in
the contract's status codes, media types, headers and schemas."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.reliability.conftest import KEY_A, ROOT, Client

MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CONFIG = SchemathesisConfig.from_dict(
    {"phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}}}
)
schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml", config=CONFIG)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_holds_to_its_contract(case: Any, front: Client, results: dict[str, Any]) -> None:
    response = case.call_and_validate(
        base_url=front.base_url,
        headers={"Authorization": f"Bearer {KEY_A}"},
        checks=CHECKS,
    )
    fuzz = results.setdefault("fuzz", {"requests": 0, "by_status": {}, "server_errors": 0})
    fuzz["requests"] += 1
    fuzz["by_status"][str(response.status_code)] = (
        fuzz["by_status"].get(str(response.status_code), 0) + 1
    )
    fuzz["server_errors"] += int(response.status_code >= 500)
    fuzz["max_examples_per_operation"] = MAX_EXAMPLES
