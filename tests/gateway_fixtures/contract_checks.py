"""A schemathesis check of our own, loaded by the CLI through ``SCHEMATHESIS_HOOKS`` (tests/test_gateway_contract.py).

schemathesis's ``response_schema_conformance`` already validates every error body against the
documented envelope; this adds what a schema cannot say: the body's ``request_id`` is the
``X-Request-ID`` header's.
"""

from __future__ import annotations

from typing import Any

import schemathesis

from api.schemas import ErrorPublic


@schemathesis.check
def error_body_names_its_request(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every non-2xx answer carries the error envelope whose request_id is the X-Request-ID header."""
    if response.status_code < 400:
        return None
    error = ErrorPublic.model_validate(response.json()).error
    header = response.headers.get("x-request-id", [""])[0]  # schemathesis keeps header values as lists
    assert error.request_id and error.request_id == header, (error.request_id, header)
    return None
