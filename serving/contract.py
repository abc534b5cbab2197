"""Names from ``docs/serving-contract.md`` that the servers rely on, and the feature order they expect.

The feature lists come from :mod:`feature_repo.schema` (never hard-coded here), so a feature added
there changes what every signal server expects, and a model trained before the change is refused.
"""

from __future__ import annotations

from typing import Final

from feature_repo.schema import ALLOCATOR_FEATURES, ALLOCATOR_SERVICE, FEATURES_BY_VIEW, MODEL_SERVICES, names

DEFAULT_ALIAS: Final = "champion"

# Registered model name -> the Feast feature service whose ordered features it takes.
SIGNAL_FEATURE_SERVICES: Final[dict[str, str]] = {
    "technical": "technical_model_v1",
    "fundamental": "fundamental_model_v1",
    "sentiment_signal": "sentiment_signal_model_v1",
}

ENSEMBLE_NAME: Final = "ensemble"
# The ensemble takes one column per signal model, named by the registered model name.
ENSEMBLE_COMPONENTS: Final[tuple[str, ...]] = tuple(SIGNAL_FEATURE_SERVICES)
ENSEMBLE_OUTPUTS: Final[tuple[str, ...]] = ("score", "coverage")

ALLOCATOR_NAME: Final = "allocator"
ALLOCATOR_FEATURE_SERVICE: Final = ALLOCATOR_SERVICE
TICKER_INPUT: Final = "ticker"
CURRENT_WEIGHT_INPUT: Final = "current_weight"
# The allocator's signature: the ticker (string), the service's features in the schema's order and
# the weight held now (double, optional); it answers one ``weight`` per row.
ALLOCATOR_INPUTS: Final[tuple[str, ...]] = (TICKER_INPUT, *ALLOCATOR_FEATURES, CURRENT_WEIGHT_INPUT)
WEIGHT_OUTPUT: Final = "weight"
# The start of the 400 message for a ticker the allocator was not trained on: the gateway tells
# this refusal apart from the others by it (docs/serving-contract.md), so it never changes.
OUTSIDE_UNIVERSE_MESSAGE: Final = "outside the allocator's trained universe"

SENTIMENT_TEXT_NAME: Final = "sentiment_text"
TEXT_INPUT: Final = "text"
# The text model's signature: one string column ``text``; it answers one probability per label.
SENTIMENT_LABELS: Final[tuple[str, ...]] = ("negative", "neutral", "positive")
# The tag (and its value) every text-model version carries: a version of another task is refused.
TAG_TASK: Final = "task"
SENTIMENT_TEXT_TASK: Final = SENTIMENT_TEXT_NAME
# The gateway's limits on ``POST /v1/sentiment`` (``api.schemas.SentimentRequest``), enforced here too.
DEFAULT_MAX_TEXTS: Final = 64
MAX_TEXT_CHARS: Final = 2000

SCORE_OUTPUT: Final = "score"
BIAS_OUTPUT: Final = "bias"
# The explainer's link flag, per row: 1.0 when the model's score is the logistic of its raw score
# (bias + contributions are log-odds: the binary objective), 0.0 when the score is the raw score
# itself (regression on the cross-sectional label, lambdarank). The gateway reads units from it.
LOGISTIC_LINK_OUTPUT: Final = "logistic_link"
EXPLAIN_SUFFIX: Final = "-explain"
NO_FEATURE_SERVICE: Final = "none"

# Tags every signal-model version carries (written by training).
TAG_FEATURE_SERVICE: Final = "feature_service"
SIGNAL_VERSION_TAGS: Final[tuple[str, ...]] = ("feature_service", "horizon", "snapshot_hash", "code_version")


def signal_services(registered_name: str) -> tuple[str, ...]:
    """Every version of a signal model's feature service that the servers know, oldest first.

    The versions share the default service's name up to ``_v`` (``technical_model_v1``,
    ``technical_model_v2``) and are those :data:`feature_repo.schema.MODEL_SERVICES` declares.
    """
    family = SIGNAL_FEATURE_SERVICES[registered_name].rsplit("_v", 1)[0]
    return tuple(s for s in MODEL_SERVICES if s.rsplit("_v", 1)[0] == family)


def service_features(feature_service: str) -> list[str]:
    """The ordered feature names of ``feature_service``, as training records them in a signature.

    Raises:
        KeyError: ``feature_service`` is not declared in :data:`feature_repo.schema.MODEL_SERVICES`.
    """
    return [name for view in MODEL_SERVICES[feature_service] for name in names(FEATURES_BY_VIEW[view])]
