"""Names that cross a package or process boundary, defined once: every app imports them from here.

``training``, ``serving``, ``api`` and ``monitoring`` never import each other; they meet through
MLflow registered models and aliases, Feast feature services and the Open Inference Protocol v2
(docs/serving-contract.md). Whatever those meetings are spelt with lives in this module:

- the feature services and their ordered features (:func:`service_features`),
- the registered model names and registry aliases,
- the MLflow tags training writes and the servers check,
- the v2 tensor names,
- the error codes a model server puts in its error body for the gateway,
- the gateway's API key scopes (:class:`Scope`; stored keys hold their values).

The telemetry-off environment, the other setting every process shares, is
:mod:`feature_repo.telemetry`.

It imports the standard library and :mod:`feature_repo.schema` only (an import-linter contract and
``tests/test_contract_names.py`` hold it to that), so the gateway and the client SDK import it
without Feast, pandas or numpy.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from feature_repo.schema import ALLOCATOR_FEATURES, FEATURES_BY_VIEW, names

# --- Feast feature services -------------------------------------------------------------------

# Feature service name -> the views (all of their features) it serves.
MODEL_SERVICES: Final[dict[str, tuple[str, ...]]] = {
    "technical_model_v1": ("technical_features",),
    # v1's features then the Alpha158-style library; v1 keeps serving until v2 is promoted.
    "technical_model_v2": ("technical_features", "alpha_features"),
    "fundamental_model_v1": ("fundamental_features",),
    "sentiment_signal_model_v1": ("sentiment_features",),
}
# The allocator's service serves a subset of one view: ALLOCATOR_FEATURES, all technical features.
ALLOCATOR_SERVICE: Final = "allocator_v1"
ALLOCATOR_VIEW: Final = "technical_features"
# Every feature service of the repository, in declaration order.
FEATURE_SERVICES: Final[tuple[str, ...]] = (*MODEL_SERVICES, ALLOCATOR_SERVICE)


def service_views(service: str) -> tuple[str, ...]:
    """The feature views ``service`` reads, in serving order.

    Raises:
        KeyError: ``service`` is not one of :data:`FEATURE_SERVICES` (the message names them).
    """
    if service == ALLOCATOR_SERVICE:
        return (ALLOCATOR_VIEW,)
    if service not in MODEL_SERVICES:
        raise KeyError(unknown_service(service))
    return MODEL_SERVICES[service]


def service_features(service: str) -> tuple[str, ...]:
    """The features ``service`` serves, in serving order (the order a model's signature records).

    Raises:
        KeyError: ``service`` is not one of :data:`FEATURE_SERVICES` (the message names them).
    """
    if service == ALLOCATOR_SERVICE:
        return ALLOCATOR_FEATURES
    return tuple(f for view in service_views(service) for f in names(FEATURES_BY_VIEW[view]))


def unknown_service(service: str) -> str:
    """The reason given for a feature service name that is not declared here."""
    return f"unknown feature service '{service}'; valid services: {', '.join(FEATURE_SERVICES)}"


# --- Registered models and aliases ------------------------------------------------------------

TECHNICAL: Final = "technical"
FUNDAMENTAL: Final = "fundamental"
SENTIMENT_SIGNAL: Final = "sentiment_signal"
ENSEMBLE: Final = "ensemble"
ALLOCATOR: Final = "allocator"
SENTIMENT_TEXT: Final = "sentiment_text"

# Signal model (registered name) -> the feature service its served version takes.
SIGNAL_FEATURE_SERVICES: Final[dict[str, str]] = {
    TECHNICAL: "technical_model_v1",
    FUNDAMENTAL: "fundamental_model_v1",
    SENTIMENT_SIGNAL: "sentiment_signal_model_v1",
}
# The signal models the ensemble blends: one ensemble input column each, named by the model.
COMPONENT_MODELS: Final[tuple[str, ...]] = tuple(SIGNAL_FEATURE_SERVICES)
# Every registered model a server serves, in the launcher's start order.
SERVED_MODELS: Final[tuple[str, ...]] = (*COMPONENT_MODELS, ENSEMBLE, ALLOCATOR, SENTIMENT_TEXT)
# The feature services the served models read online: the gateway reads only their views.
SERVED_SERVICES: Final[tuple[str, ...]] = (*SIGNAL_FEATURE_SERVICES.values(), ALLOCATOR_SERVICE)


def signal_services(model: str) -> tuple[str, ...]:
    """Every version of a signal model's feature service, oldest first (a server may serve any).

    The versions share the served service's name up to ``_v`` (``technical_model_v1``,
    ``technical_model_v2``) and are those :data:`MODEL_SERVICES` declares.

    Raises:
        KeyError: ``model`` is not a signal model (:data:`COMPONENT_MODELS`).
    """
    family = SIGNAL_FEATURE_SERVICES[model].rsplit("_v", 1)[0]
    return tuple(s for s in MODEL_SERVICES if s.rsplit("_v", 1)[0] == family)


CHAMPION: Final = "champion"  # the version a server serves
CHALLENGER: Final = "challenger"  # a registered candidate
ALIASES: Final[tuple[str, ...]] = (CHAMPION, CHALLENGER)

# --- MLflow tags (written by training, checked by the servers) --------------------------------

TAG_FEATURE_SERVICE: Final = "feature_service"
SIGNAL_VERSION_TAGS: Final[tuple[str, ...]] = (TAG_FEATURE_SERVICE, "horizon", "snapshot_hash", "code_version")
TAG_TASK: Final = "task"
SENTIMENT_TEXT_TASK: Final = SENTIMENT_TEXT
# ``feature_service`` label of a model without one (the ensemble, the text model).
NO_FEATURE_SERVICE: Final = "none"

# --- Open Inference Protocol v2 tensor names --------------------------------------------------

SCORE_OUTPUT: Final = "score"
COVERAGE_OUTPUT: Final = "coverage"
ENSEMBLE_OUTPUTS: Final[tuple[str, ...]] = (SCORE_OUTPUT, COVERAGE_OUTPUT)
# A signal model's explainer is served as ``<name>-explain``: one output per feature, then these.
EXPLAIN_SUFFIX: Final = "-explain"
BIAS_OUTPUT: Final = "bias"
# Per row: 1.0 when the score is the logistic of the raw score (bias + contributions are log-odds),
# 0.0 when the score is the raw score itself.
LOGISTIC_LINK_OUTPUT: Final = "logistic_link"
TICKER_INPUT: Final = "ticker"
CURRENT_WEIGHT_INPUT: Final = "current_weight"
# The allocator's inputs: the ticker (BYTES), the service's features in order, the weight held now.
ALLOCATOR_INPUTS: Final[tuple[str, ...]] = (TICKER_INPUT, *ALLOCATOR_FEATURES, CURRENT_WEIGHT_INPUT)
WEIGHT_OUTPUT: Final = "weight"
TEXT_INPUT: Final = "text"
SENTIMENT_LABELS: Final[tuple[str, ...]] = ("negative", "neutral", "positive")
# The gateway's limits on ``POST /v1/sentiment``; the text model server enforces them too.
MAX_TEXTS: Final = 64
MAX_TEXT_CHARS: Final = 2000
# Sessions of daily returns the return_window view stores per ticker (feature_repo.market), hence the
# longest forecast horizon the gateway accepts. Three years: the longest horizon (252) fits three times over.
RETURN_WINDOW_SESSIONS: Final = 756

# --- Error codes that cross a process boundary ------------------------------------------------

# A model server's 400 body is ``{"error": <reason>, "code": <ErrorCode>}``; the code is there when
# the refusal is one a caller acts on, and the gateway reads the code, never the reason's text.
ERROR_REASON_FIELD: Final = "error"
ERROR_CODE_FIELD: Final = "code"


class ErrorCode(StrEnum):
    """Why a model server refused a request, when a caller tells that refusal apart."""

    OUTSIDE_UNIVERSE = "outside_universe"
    """A fixed-universe allocator was asked about a ticker it was not trained on."""


# --- Gateway API key scopes -------------------------------------------------------------------


class Scope(StrEnum):
    """What an API key may do; stored keys hold the values, so a value never changes."""

    SIGNALS_READ = "signals:read"
    ALLOCATIONS_WRITE = "allocations:write"
    EXPLANATIONS_READ = "explanations:read"
    SENTIMENT_READ = "sentiment:read"
    MODELS_READ = "models:read"
    BACKTESTS_WRITE = "backtests:write"
    BACKTESTS_READ = "backtests:read"
    REGIME_READ = "regime:read"
    FORECASTS_READ = "forecasts:read"
    BRIEFING_READ = "briefing:read"
