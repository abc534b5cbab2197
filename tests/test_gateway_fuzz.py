"""Schemathesis against the gateway's own OpenAPI, served by a real uvicorn: no 5xx, error bodies everywhere.

Over 1,000 generated cases in total (counted and asserted by the last test).
"""

# ruff: noqa: F811  # fixtures imported from tests/gateway_fixtures are parameters by design
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from api.keys import ALL_SCOPES, create_key
from api.schemas import ErrorPublic
from tests.gateway_fixtures.fixtures import running_gateway, settings_for, shared_env  # noqa: F401

pytestmark = pytest.mark.slow

CALLS: list[int] = []
GATEWAY: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_schema(shared_env, tmp_path_factory):
    tmp = Path(tmp_path_factory.mktemp("fuzz"))
    with running_gateway(settings_for(shared_env, tmp)) as (url, app):
        services = app.state.services
        key = create_key(services.engine, "fuzzer", ALL_SCOPES, "1000000/minute", services.settings.pepper)
        GATEWAY.update(url=url, key=key.plaintext)
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


FUZZ_SETTINGS = settings(
    max_examples=215,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def check_case(case) -> None:
    response = case.call(base_url=GATEWAY["url"], headers={"Authorization": f"Bearer {GATEWAY['key']}"})
    CALLS.append(response.status_code)
    # With every test model server up, nothing may be a 5xx.
    assert response.status_code < 500, response.text
    request_id = response.headers["x-request-id"][0]  # schemathesis keeps header values as lists
    assert request_id
    if response.status_code >= 400:
        error = ErrorPublic.model_validate(response.json()).error
        assert error.request_id == request_id


def test_no_5xx_and_every_error_has_the_error_body(api_schema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/signals", "/v1/allocations", "/v1/sentiment"}
    for operation in operations:

        def run(case) -> None:
            check_case(case)

        FUZZ_SETTINGS(given(case=operation.as_strategy())(run))()


def test_the_fuzzer_ran_enough_cases() -> None:
    print(f"fuzz cases: {len(CALLS)}; statuses: {sorted(Counter(CALLS).items())}")
    assert len(CALLS) >= 1000, len(CALLS)
    assert 200 in CALLS and 422 in CALLS
    assert not [s for s in CALLS if s >= 500 and s != 503]
