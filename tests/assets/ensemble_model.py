"""Test ensemble (MLflow models-from-code, numpy only) implementing the ensemble contract.

``score`` is the weighted mean of the component scores present in a row, the weights renormalised
over those components; ``coverage`` is the share of the total weight present. A component is
absent when its column is missing or its value is NaN. The weights come from ``model_config``.
This is a fixture for the serving tests, not the production ensemble (training owns that one).
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc.model import PythonModel


class WeightedMeanEnsemble(PythonModel):
    """Weighted mean of the present components, renormalised per row."""

    def load_context(self, context: Any) -> None:
        self.weights = {str(k): float(v) for k, v in context.model_config["weights"].items()}

    # No type hints on purpose: MLflow 3 turns predict's hints into its own input schema; the
    # logged signature is the schema here.
    def predict(self, context, model_input, params=None):
        rows = len(model_input)
        names = list(self.weights)
        weights = np.array([self.weights[n] for n in names])
        columns = [
            np.asarray(model_input[n], dtype=np.float64) if n in model_input.columns else np.full(rows, np.nan)
            for n in names
        ]
        scores = np.column_stack(columns) if rows else np.empty((0, len(names)))
        present = ~np.isnan(scores)
        present_weight = (present * weights).sum(axis=1)
        weighted = (np.where(present, scores, 0.0) * weights).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.where(present_weight > 0, weighted / present_weight, np.nan)
        return {"score": score, "coverage": present_weight / weights.sum()}


mlflow.models.set_model(WeightedMeanEnsemble())
