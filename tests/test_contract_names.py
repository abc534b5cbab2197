"""The shared names of ``feature_repo.contract``: light to import, consistent, and what the docs show.

``docs/serving-contract.md`` holds a block generated from the module; a test fails when the two
disagree. Regenerate the block with ``python -m tests.test_contract_names``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from feature_repo import contract
from feature_repo.contract import (
    ALLOCATOR,
    ALLOCATOR_INPUTS,
    ALLOCATOR_SERVICE,
    COMPONENT_MODELS,
    ENSEMBLE,
    ENSEMBLE_OUTPUTS,
    FEATURE_SERVICES,
    MODEL_SERVICES,
    SERVED_MODELS,
    SERVED_SERVICES,
    SIGNAL_FEATURE_SERVICES,
    ErrorCode,
    Scope,
    service_features,
    service_views,
    signal_services,
)
from feature_repo.schema import ALLOCATOR_FEATURES, FEATURES_BY_VIEW, names

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "serving-contract.md"
BEGIN = "<!-- BEGIN GENERATED from feature_repo/contract.py by `python -m tests.test_contract_names` -->"
END = "<!-- END GENERATED -->"
# Libraries the gateway and the client SDK must not pay for when they only need the names.
HEAVY_FOR_NAMES = ("feast", "pandas", "numpy", "pyarrow", "pydantic", "sqlalchemy", "mlflow", "kserve", "torch")


def test_importing_the_names_pulls_no_app_and_no_data_library() -> None:
    """A fresh interpreter imports the module with the standard library and feature_repo.schema only."""
    code = (
        "import json, sys; import feature_repo.contract; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{(*HEAVY_FOR_NAMES, 'training', 'serving', 'api', 'monitoring')!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


def test_every_service_lists_its_views_features_in_order() -> None:
    for service in MODEL_SERVICES:
        expected = tuple(f for view in MODEL_SERVICES[service] for f in names(FEATURES_BY_VIEW[view]))
        assert service_features(service) == expected
    assert service_features(ALLOCATOR_SERVICE) == ALLOCATOR_FEATURES
    allocator_view = names(FEATURES_BY_VIEW[service_views(ALLOCATOR_SERVICE)[0]])
    assert set(ALLOCATOR_FEATURES) <= set(allocator_view)
    assert (*MODEL_SERVICES, ALLOCATOR_SERVICE) == FEATURE_SERVICES


def test_an_unknown_service_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(
        KeyError, match="unknown feature service 'technical_model_v9'; valid services: technical_model_v1"
    ):
        service_features("technical_model_v9")
    with pytest.raises(KeyError, match=ALLOCATOR_SERVICE):
        service_views("nope")


def test_served_models_and_services_agree() -> None:
    assert tuple(SIGNAL_FEATURE_SERVICES) == COMPONENT_MODELS
    assert SERVED_MODELS[: len(COMPONENT_MODELS)] == COMPONENT_MODELS
    assert {ENSEMBLE, ALLOCATOR} <= set(SERVED_MODELS) and len(set(SERVED_MODELS)) == len(SERVED_MODELS)
    assert (*SIGNAL_FEATURE_SERVICES.values(), ALLOCATOR_SERVICE) == SERVED_SERVICES
    for model, service in SIGNAL_FEATURE_SERVICES.items():
        assert service in signal_services(model) and set(signal_services(model)) <= set(MODEL_SERVICES)
    assert signal_services("technical") == ("technical_model_v1", "technical_model_v2")
    assert ("ticker", *ALLOCATOR_FEATURES, "current_weight") == ALLOCATOR_INPUTS


def test_scope_values_are_the_stored_ones() -> None:
    """Keys in every gateway database hold these strings: a value must never change."""
    assert [s.value for s in Scope] == [
        "signals:read",
        "allocations:write",
        "explanations:read",
        "sentiment:read",
        "models:read",
        "backtests:write",
        "backtests:read",
        "regime:read",
        "forecasts:read",
        "briefing:read",
    ]
    assert f"{Scope.SIGNALS_READ}" == "signals:read" and Scope("briefing:read") is Scope.BRIEFING_READ


def _code_list(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"`{v}`" for v in values)


def render() -> str:
    """The generated block of docs/serving-contract.md, from feature_repo.contract."""
    c = contract
    lines = [
        BEGIN,
        "",
        "Feast feature services (`feature_repo.contract.service_features(name)` gives the ordered list):",
        "",
        "| feature service | views | features |",
        "| --- | --- | --- |",
    ]
    for service in FEATURE_SERVICES:
        features = service_features(service)
        shown = _code_list(features) if service == ALLOCATOR_SERVICE else f"{len(features)}, the views' own order"
        lines.append(f"| `{service}` | {_code_list(service_views(service))} | {shown} |")
    signal_inputs = "the service's features, FP64 `[n]`, named by the feature"
    lines += [
        "",
        "Registered models, their KServe names and v2 tensors:",
        "",
        "| registered model | feature service (versions a server may serve) | v2 inputs | v2 outputs |",
        "| --- | --- | --- | --- |",
    ]
    for model, service in SIGNAL_FEATURE_SERVICES.items():
        versions = ", ".join(f"`{s}`" for s in signal_services(model) if s != service)
        served = f"`{service}`" + (f" ({versions})" if versions else "")
        lines.append(f"| `{model}` | {served} | {signal_inputs} | `{c.SCORE_OUTPUT}` |")
        explainer_outputs = f"one per feature, `{c.BIAS_OUTPUT}`, `{c.SCORE_OUTPUT}`, `{c.LOGISTIC_LINK_OUTPUT}`"
        lines.append(
            f"| `{model}{c.EXPLAIN_SUFFIX}` (same server) | `{service}` | {signal_inputs} | {explainer_outputs} |"
        )
    lines += [
        f"| `{ENSEMBLE}` | none | {_code_list(COMPONENT_MODELS)}, FP64 `[n]` | {_code_list(ENSEMBLE_OUTPUTS)} |",
        f"| `{ALLOCATOR}` | `{ALLOCATOR_SERVICE}` | `{c.TICKER_INPUT}` (BYTES), the service's features (FP64), "
        f"`{c.CURRENT_WEIGHT_INPUT}` (FP64) | `{c.WEIGHT_OUTPUT}` |",
        f"| `{c.SENTIMENT_TEXT}` | none | `{c.TEXT_INPUT}` (BYTES), 1 to {c.MAX_TEXTS} texts of at most "
        f"{c.MAX_TEXT_CHARS:,} characters | {_code_list(c.SENTIMENT_LABELS)} |",
        "",
        f"- Aliases: {_code_list(c.ALIASES)}; servers follow `{c.CHAMPION}`.",
        f"- Tags of a signal-model version: {_code_list(c.SIGNAL_VERSION_TAGS)}; of the allocator: "
        f"`{c.TAG_FEATURE_SERVICE}={ALLOCATOR_SERVICE}`; of the text model: `{c.TAG_TASK}={c.SENTIMENT_TEXT_TASK}`. "
        f'A model without a feature service reports `feature_service="{c.NO_FEATURE_SERVICE}"`.',
        f'- A model server\'s 400 body: `{{"{c.ERROR_REASON_FIELD}": <reason>}}`, plus '
        f'`"{c.ERROR_CODE_FIELD}": <code>` for a refusal the gateway acts on. Codes: '
        f"{_code_list([e.value for e in ErrorCode])}.",
        f"- API key scopes (`feature_repo.contract.Scope`): {_code_list([s.value for s in Scope])}.",
        "",
        END,
    ]
    return "\n".join(lines)


def _generated(text: str) -> str:
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    return text[start:stop]


def test_the_serving_contract_doc_shows_the_names_of_the_code() -> None:
    assert _generated(DOC.read_text()) == render(), "regenerate it: python -m tests.test_contract_names"


if __name__ == "__main__":
    text = DOC.read_text()
    DOC.write_text(text.replace(_generated(text), render()))
    print(f"rewrote the generated block of {DOC.relative_to(ROOT)}")
