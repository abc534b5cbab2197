"""KServe model of the ensemble: the champion pyfunc blends whichever component scores arrive."""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_repo.contract import ENSEMBLE, ENSEMBLE_OUTPUTS
from serving.loaders import LoadedEnsemble
from serving.model_base import ChampionModel
from serving.tensors import Columns, check_columns, pyfunc_outputs


class EnsembleModel(ChampionModel[LoadedEnsemble]):
    """``score`` and ``coverage`` from any non-empty subset of the component scores.

    An absent component reaches the pyfunc as an all-NaN column, and a ``null`` score as a NaN in
    its row: the pyfunc treats NaN as "component not present" either way, so the frame it sees
    always has every column of its signature.
    """

    def compute(self, loaded: LoadedEnsemble, columns: Columns) -> tuple[int, dict[str, np.ndarray]]:
        """Run the pyfunc on the components present (absent ones as NaN)."""
        rows = check_columns(columns, loaded.inputs, require_all=False)
        frame = pd.DataFrame({name: columns.get(name, np.full(rows, np.nan)) for name in loaded.inputs})
        if rows == 0:
            return 0, {name: np.empty(0) for name in ENSEMBLE_OUTPUTS}
        return rows, pyfunc_outputs(loaded.model.predict(frame), ENSEMBLE_OUTPUTS, rows, ENSEMBLE, loaded.version)
