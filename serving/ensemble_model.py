"""KServe model of the ensemble: the champion pyfunc blends whichever component scores arrive."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from feature_repo.contract import ENSEMBLE_OUTPUTS
from serving.errors import ModelLoadError
from serving.loaders import LoadedEnsemble
from serving.model_base import ChampionModel
from serving.tensors import Columns, check_columns


def _named_outputs(result: Any, rows: int, version: str) -> dict[str, np.ndarray]:
    frame = result if isinstance(result, pd.DataFrame) else pd.DataFrame(result)
    missing = [name for name in ENSEMBLE_OUTPUTS if name not in frame.columns]
    if missing or len(frame) != rows:
        # The registered model broke the contract: a server error (500), not the client's fault.
        raise ModelLoadError(
            f"ensemble version {version} returned columns {list(frame.columns)} x {len(frame)} rows; "
            f"expected {list(ENSEMBLE_OUTPUTS)} x {rows}"
        )
    return {name: frame[name].to_numpy(dtype=np.float64) for name in ENSEMBLE_OUTPUTS}


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
        return rows, _named_outputs(loaded.model.predict(frame), rows, loaded.version)
