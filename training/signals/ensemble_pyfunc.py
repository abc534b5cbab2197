"""The registered ensemble model (MLflow models-from-code): the weights plus the blending rule.

Logged with ``python_model=<this file>``, ``model_config={"weights": {...}, "affine": {...}}`` and
``code_paths=[training/models/blend.py]``, so a model server loads it with nothing but MLflow,
numpy and pandas: the blending code travels inside the model.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel  # type: ignore[attr-defined]

try:  # the project installed: training, tests
    from training.models.blend import blend
except ImportError:  # inside a model server: code_paths put blend.py on sys.path
    from blend import blend  # type: ignore[no-redef]


class EnsemblePyfunc(PythonModel):  # type: ignore[misc]
    """Blends whatever component score columns are present with the registered weights.

    Each component is first mapped onto the common scale (``affine``: name -> [shift, scale]); an
    ensemble registered before the maps existed has none and blends raw scores, as it did.
    """

    def load_context(self, context: Any) -> None:
        config = context.model_config
        self.weights: dict[str, float] = {k: float(v) for k, v in config["weights"].items()}
        self.affine: dict[str, list[float]] = {k: [float(x) for x in v] for k, v in config.get("affine", {}).items()}

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return blend(model_input, self.weights, self.affine)


mlflow.models.set_model(EnsemblePyfunc())
