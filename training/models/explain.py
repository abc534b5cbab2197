"""Per-row explanations from LightGBM's native TreeSHAP (``pred_contrib=True``).

Contributions are in raw-margin (log-odds) units: for each row they sum, with ``bias``, to
:meth:`SignalModel.score`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.errors import TrainingError
from training.models.signal import SignalModel

BIAS = "bias"


def contributions(model: SignalModel, X: pd.DataFrame) -> pd.DataFrame:
    """SHAP contribution of every feature to every row's raw score, plus the ``bias`` column.

    Args:
        model: a fitted signal model.
        X: rows to explain, columns in the model's training order.

    Returns:
        A frame indexed like ``X`` with columns ``model.feature_names + ["bias"]``.
    """
    model.check_signature(X)
    values = np.asarray(model.booster.predict(X, pred_contrib=True), dtype=np.float64)
    columns = [*model.feature_names, BIAS]
    if values.shape != (len(X), len(columns)):
        raise TrainingError(f"unexpected contribution shape {values.shape}, wanted {(len(X), len(columns))}")
    return pd.DataFrame(values, index=X.index, columns=columns)


def top_contributions(row_contribs: pd.Series, k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` features with the largest absolute contribution in one row, largest first.

    ``bias`` is not a feature and is left out.
    """
    features = row_contribs.drop(labels=[BIAS], errors="ignore")
    order = features.abs().sort_values(ascending=False, kind="stable").index[:k]
    return [(str(name), float(features[name])) for name in order]
