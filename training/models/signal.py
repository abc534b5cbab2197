"""The LightGBM signal model: P(a ticker beats the benchmark over the label horizon).

The model records the exact feature order it was trained on and refuses any other at prediction
time; that order is the serving-side signature, so a frame whose columns were renamed, dropped or
reordered fails loudly instead of being scored against the wrong trees.

Saved as LightGBM's own text model plus a small JSON sidecar (feature names and parameters), so a
server needs only ``lightgbm`` to load it. No tracking here: the pipeline logs the saved files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Self

import lightgbm as lgb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from training.errors import TrainingError

MODEL_FILE = "model.txt"
SIDECAR_FILE = "signature.json"
FORMAT_VERSION = 1


class SignalModelParams(BaseModel):
    """LightGBM hyper-parameters, defaulted for small, noisy daily financial panels.

    Shallow trees, a slow learning rate, large leaves and row/feature subsampling: the signal is
    weak, so the defaults trade variance for bias. ``num_threads`` defaults to 1 because LightGBM
    is only bit-reproducible for a fixed thread count.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_leaves: int = Field(15, ge=2, description="Maximum leaves per tree.")
    learning_rate: float = Field(0.03, gt=0, le=1, description="Shrinkage per boosting round.")
    n_estimators: int = Field(300, ge=1, description="Maximum boosting rounds.")
    min_child_samples: int = Field(50, ge=1, description="Minimum rows in a leaf.")
    feature_fraction: float = Field(0.8, gt=0, le=1, description="Share of features sampled per tree.")
    bagging_fraction: float = Field(0.8, gt=0, le=1, description="Share of rows sampled per bagging round.")
    bagging_freq: int = Field(1, ge=0, description="Re-sample rows every k rounds; 0 disables bagging.")
    lambda_l2: float = Field(1.0, ge=0, description="L2 penalty on leaf values.")
    early_stopping_rounds: int = Field(30, ge=1, description="Patience on the validation set, when one is given.")
    seed: int = Field(7, description="Seed for every random choice LightGBM makes.")
    num_threads: int = Field(1, ge=1, description="Threads; keep fixed for reproducible models.")

    def lgb_params(self) -> dict[str, Any]:
        """The parameter dict ``lightgbm.train`` expects (rounds and patience are passed separately)."""
        return {
            "objective": "binary",
            "metric": "binary_logloss",
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "num_threads": self.num_threads,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }


def _check_labels(X: pd.DataFrame, y: pd.Series, what: str) -> None:
    if len(X) == 0:
        raise TrainingError(f"{what}: no rows to train on")
    if len(X) != len(y):
        raise TrainingError(f"{what}: X has {len(X)} rows but y has {len(y)}")
    values = set(pd.unique(y))
    if not values <= {0, 1}:
        raise TrainingError(f"{what}: labels must be 0/1, got {sorted(values, key=str)[:5]}")


class SignalModel:
    """A binary LightGBM classifier bound to the feature order it was trained on."""

    def __init__(self, params: SignalModelParams | None = None) -> None:
        self.params = params if params is not None else SignalModelParams()
        self._booster: lgb.Booster | None = None
        self._feature_names: list[str] = []

    @property
    def booster(self) -> lgb.Booster:
        """The fitted LightGBM booster; raises :class:`TrainingError` before :meth:`fit`."""
        if self._booster is None:
            raise TrainingError("SignalModel is not fitted; call fit() or load() first")
        return self._booster

    @property
    def feature_names(self) -> list[str]:
        """The training column order, which every prediction frame must match exactly."""
        return list(self._feature_names)

    @property
    def num_trees(self) -> int:
        """Boosting rounds kept (the best iteration when early stopping ran)."""
        booster = self.booster
        return booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()

    def fit(self, X: pd.DataFrame, y: pd.Series, *, valid: tuple[pd.DataFrame, pd.Series] | None = None) -> Self:
        """Train on ``(X, y)``; with ``valid``, stop early on its log-loss and keep the best round.

        Args:
            X: feature frame; its column order becomes the model's signature.
            y: 0/1 labels aligned with ``X`` by position.
            valid: optional held-out ``(X, y)`` with the same columns, for early stopping.

        Returns:
            ``self``, fitted.
        """
        names = [str(c) for c in X.columns]
        if len(set(names)) != len(names):
            raise TrainingError(f"duplicate feature columns: {sorted({n for n in names if names.count(n) > 1})}")
        _check_labels(X, y, "train")
        train_set = lgb.Dataset(X, label=np.asarray(y, dtype=np.float64), feature_name=names, free_raw_data=True)
        valid_sets: list[lgb.Dataset] = []
        callbacks: list[Any] = []
        if valid is not None:
            vx, vy = valid
            _check_columns(names, vx)
            _check_labels(vx, vy, "valid")
            valid_sets.append(lgb.Dataset(vx, label=np.asarray(vy, dtype=np.float64), reference=train_set))
            callbacks.append(lgb.early_stopping(self.params.early_stopping_rounds, verbose=False))
        self._booster = lgb.train(
            self.params.lgb_params(),
            train_set,
            num_boost_round=self.params.n_estimators,
            valid_sets=valid_sets,
            valid_names=["valid"] * len(valid_sets),
            callbacks=callbacks,
        )
        self._feature_names = names
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """P(label = 1) for each row of ``X`` (columns must match :attr:`feature_names` exactly)."""
        self.check_signature(X)
        return np.asarray(self.booster.predict(X), dtype=np.float64)

    def score(self, X: pd.DataFrame) -> np.ndarray:
        """Raw margin (log-odds) for each row; what SHAP contributions sum to."""
        self.check_signature(X)
        return np.asarray(self.booster.predict(X, raw_score=True), dtype=np.float64)

    def save(self, path: str | Path) -> Path:
        """Write ``model.txt`` and ``signature.json`` into directory ``path`` (created if absent)."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MODEL_FILE).write_text(self.booster.model_to_string(), encoding="utf-8")
        sidecar = {
            "format_version": FORMAT_VERSION,
            "feature_names": self._feature_names,
            "params": self.params.model_dump(),
        }
        (directory / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=2), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, path: str | Path) -> SignalModel:
        """Read a model written by :meth:`save`, checking the sidecar agrees with the booster."""
        directory = Path(path)
        try:
            sidecar = json.loads((directory / SIDECAR_FILE).read_text(encoding="utf-8"))
            booster = lgb.Booster(model_str=(directory / MODEL_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, lgb.basic.LightGBMError) as e:
            raise TrainingError(f"cannot load SignalModel from {directory}: {e}") from e
        if sidecar.get("format_version") != FORMAT_VERSION:
            raise TrainingError(f"{directory}: unsupported format_version {sidecar.get('format_version')!r}")
        names = [str(n) for n in sidecar["feature_names"]]
        if booster.feature_name() != names:
            raise TrainingError(f"{directory}: sidecar feature names disagree with the booster's")
        model = cls(SignalModelParams.model_validate(sidecar["params"]))
        model._booster = booster
        model._feature_names = names
        return model

    def check_signature(self, X: pd.DataFrame) -> None:
        """Raise :class:`TrainingError` unless ``X`` has exactly the training columns, in order."""
        _check_columns(self._fitted_names(), X)

    def _fitted_names(self) -> list[str]:
        self.booster  # noqa: B018 - raises when not fitted
        return self._feature_names


def _check_columns(expected: list[str], X: pd.DataFrame) -> None:
    """Refuse ``X`` unless its columns are exactly ``expected``, in order; name what differs."""
    got = [str(c) for c in X.columns]
    if got == expected:
        return
    missing = [c for c in expected if c not in got]
    extra = [c for c in got if c not in expected]
    parts = []
    if missing:
        parts.append(f"missing {missing}")
    if extra:
        parts.append(f"extra {extra}")
    if not missing and not extra:
        moved = [e for e, g in zip(expected, got, strict=True) if e != g]
        parts.append(f"misordered {moved}")
    raise TrainingError(f"feature columns do not match the model's signature: {'; '.join(parts)} (expected {expected})")
