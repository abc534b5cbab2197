"""KServe models of a LightGBM signal model: ``<name>`` (probabilities) and ``<name>-explain`` (SHAP)."""

from __future__ import annotations

import numpy as np

from serving.contract import BIAS_OUTPUT, SCORE_OUTPUT
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
    """``score``: P(21-session excess return > 0) per row, from the champion booster."""

    def compute(self, loaded: LoadedSignal, columns: Columns) -> tuple[int, dict[str, np.ndarray]]:
        """Probabilities of the binary objective (``Booster.predict``)."""
        X = feature_matrix(loaded, columns)
        if len(X) == 0:
            return 0, {SCORE_OUTPUT: np.empty(0)}
        return len(X), {
            SCORE_OUTPUT: np.asarray(loaded.booster.predict(X, num_threads=PREDICT_THREADS), dtype=np.float64)
        }


class SignalExplainModel(ChampionModel[LoadedSignal]):
    """One output per feature plus ``bias``: LightGBM TreeSHAP contributions in log-odds units.

    Per row they sum to the raw score, ``booster.predict(X, raw_score=True)``.
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
        return len(X), {name: contributions[:, i] for i, name in enumerate(names)}
