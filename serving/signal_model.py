"""KServe models of a LightGBM signal model: ``<name>`` (probabilities) and ``<name>-explain`` (SHAP)."""

from __future__ import annotations

import numpy as np

from feature_repo.contract import BIAS_OUTPUT, LOGISTIC_LINK_OUTPUT, SCORE_OUTPUT
from serving.loaders import LoadedSignal
from serving.model_base import ChampionModel
from serving.tensors import Columns, check_columns

# One thread per prediction: a request is a few hundred rows at most, and LightGBM's OpenMP team
# on shared or CPU-limited cores waits on descheduled siblings. Measured on 2 busy cores, 50 rows:
# p50 0.19 ms / p99 0.4 ms with one thread against p50 0.2-6 ms / p99 14-20 ms with the default.
PREDICT_THREADS = 1


def feature_matrix(loaded: LoadedSignal, columns: Columns) -> np.ndarray:
    """The request's columns as an ``(n, features)`` float64 matrix in the signature's order.

    Raises:
        BadRequest: a feature is missing or an input is not a feature of the model.
    """
    rows = check_columns(columns, loaded.features, require_all=True)
    if rows == 0:
        return np.empty((0, len(loaded.features)), dtype=np.float64)
    return np.column_stack([columns[name] for name in loaded.features])


class SignalModel(ChampionModel[LoadedSignal]):
    """``score`` per row from the champion booster: P(21-session excess return > 0) for a binary
    model, the predicted centred cross-sectional rank for a regression model, a ranking score for
    lambdarank (the registered model's ``objective``)."""

    def compute(self, loaded: LoadedSignal, columns: Columns) -> tuple[int, dict[str, np.ndarray]]:
        """``Booster.predict``: the objective's own output (probabilities only for ``binary``)."""
        X = feature_matrix(loaded, columns)
        if len(X) == 0:
            return 0, {SCORE_OUTPUT: np.empty(0)}
        return len(X), {
            SCORE_OUTPUT: np.asarray(loaded.booster.predict(X, num_threads=PREDICT_THREADS), dtype=np.float64)
        }


class SignalExplainModel(ChampionModel[LoadedSignal]):
    """One output per feature plus ``bias``: LightGBM TreeSHAP contributions in raw-score units.

    Per row they sum to the raw score, ``booster.predict(X, raw_score=True)``: log-odds for a binary
    model, the score itself otherwise. ``score`` is the signal model's own answer for the row and
    ``logistic_link`` says which (1.0: score = logistic(raw), 0.0: score = raw), so a client never
    has to know the objective to read the contributions.
    """

    def compute(self, loaded: LoadedSignal, columns: Columns) -> tuple[int, dict[str, np.ndarray]]:
        """``Booster.predict(X, pred_contrib=True)``, split into named columns."""
        X = feature_matrix(loaded, columns)
        if len(X) == 0:
            contributions = np.empty((0, len(loaded.features) + 1))
        else:
            contributions = np.asarray(
                loaded.booster.predict(X, pred_contrib=True, num_threads=PREDICT_THREADS), dtype=np.float64
            )
        names = [*loaded.features, BIAS_OUTPUT]
        outputs = {name: contributions[:, i] for i, name in enumerate(names)}
        raw = contributions.sum(axis=1)
        logistic = is_logistic(loaded)
        outputs[SCORE_OUTPUT] = 1.0 / (1.0 + np.exp(-raw)) if logistic else raw
        outputs[LOGISTIC_LINK_OUTPUT] = np.full(len(X), 1.0 if logistic else 0.0)
        return len(X), outputs


def is_logistic(loaded: LoadedSignal) -> bool:
    """Whether the booster's objective maps raw scores through the logistic (``binary``).

    LightGBM reads ``objective`` back from the model file (``"binary sigmoid:1"`` for binary).
    """
    return str(loaded.booster.params.get("objective", "")).split()[0:1] == ["binary"]
