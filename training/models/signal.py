"""The LightGBM signal model: a score ordering the names of a date by their forward excess return.

Three objectives (issue 18): ``binary`` (P(excess > 0), the first models), ``regression`` on a
cross-sectional label (the per-date rank or z-score of the excess return) and ``lambdarank`` with
one query per date (relevance grades from within-date quantiles, :func:`relevance_grades`).

With ``n_seeds > 1`` the model is the average of boosters trained with different seeds, folded into
one LightGBM booster (:func:`average_boosters`): every member's trees with their leaf values divided
by the member count. Its raw score is exactly the members' mean raw score and, TreeSHAP being
additive over trees, its contributions are the mean of theirs; so the registered format stays a
bare booster and servers, explanations and the registry need no change.

The model records the exact feature order it was trained on and refuses any other at prediction
time; that order is the serving-side signature, so a frame whose columns were renamed, dropped or
reordered fails loudly instead of being scored against the wrong trees.

Saved as LightGBM's own text model plus a small JSON sidecar (feature names and parameters), so a
server needs only ``lightgbm`` to load it. No tracking here: the pipeline logs the saved files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final, Literal, Self

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from training.errors import TrainingError

MODEL_FILE = "model.txt"
SIDECAR_FILE = "signature.json"
FORMAT_VERSION = 1
Objective = Literal["binary", "regression", "lambdarank"]
_TREE_LINE: Final = re.compile(r"^Tree=\d+$", flags=re.MULTILINE)
_METRICS: Final[dict[str, str]] = {"binary": "binary_logloss", "regression": "l2", "lambdarank": "ndcg"}


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
    objective: Objective = Field("binary", description="binary (0/1 labels), regression or lambdarank.")
    n_seeds: int = Field(1, ge=1, description="Boosters averaged, with seeds seed, seed + 1, ...")

    def lgb_params(self, member: int = 0) -> dict[str, Any]:
        """The parameter dict ``lightgbm.train`` expects (rounds and patience are passed separately).

        ``member`` offsets the sampling seeds of one booster of a seed average; the binning seed
        stays ``seed`` so every member cuts the features into the same bins.
        """
        return {
            "objective": self.objective,
            "metric": _METRICS[self.objective],
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed + member,
            "data_random_seed": self.seed,
            "num_threads": self.num_threads,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }


def _check_labels(X: pd.DataFrame, y: pd.Series, what: str, objective: str = "binary") -> None:
    if len(X) == 0:
        raise TrainingError(f"{what}: no rows to train on")
    if len(X) != len(y):
        raise TrainingError(f"{what}: X has {len(X)} rows but y has {len(y)}")
    values = np.asarray(y, dtype=np.float64)
    if not np.isfinite(values).all():
        raise TrainingError(f"{what}: {int((~np.isfinite(values)).sum())} label(s) are missing or infinite")
    if objective == "binary" and not set(np.unique(values)) <= {0.0, 1.0}:
        raise TrainingError(f"{what}: labels must be 0/1, got {sorted(set(np.unique(values)))[:5]}")
    if objective == "lambdarank" and ((values < 0).any() or (values != np.round(values)).any()):
        raise TrainingError(f"{what}: lambdarank labels must be integer grades >= 0, got {np.unique(values)[:5]}")


def relevance_grades(label: npt.ArrayLike, dates: npt.ArrayLike, grades: int) -> npt.NDArray[np.int64]:
    """Within-date quantile grades 0..grades-1 of ``label`` (higher label, higher grade).

    A row's grade is ``floor(((rank - 0.5) / n) * grades)`` with its average rank among the ``n``
    rows of its date: the same share of each date's names lands in each grade, whatever the
    market did that month.
    """
    if grades < 2:
        raise TrainingError(f"relevance grades must be at least 2, got {grades}")
    frame = pd.DataFrame({"d": np.asarray(dates), "y": np.asarray(label, dtype=np.float64)})
    if frame["y"].isna().any():
        raise TrainingError("relevance grades: the label has missing values")
    by_date = frame.groupby("d", sort=False)["y"]
    share = (by_date.rank(method="average").to_numpy() - 0.5) / by_date.transform("size").to_numpy()
    grade: npt.NDArray[np.int64] = np.clip(np.floor(share * grades), 0, grades - 1).astype(np.int64)
    return grade


def query_sizes(dates: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """LightGBM's ``group``: the run lengths of equal consecutive ``dates`` (one query per date).

    Raises:
        TrainingError: the dates are not sorted (a date split over two runs would be two queries).
    """
    days = pd.DatetimeIndex(np.asarray(dates))
    if not days.is_monotonic_increasing:
        raise TrainingError("lambdarank rows must be sorted by date: one query per date")
    starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
    sizes: npt.NDArray[np.int64] = np.diff(np.r_[starts, len(days)]).astype(np.int64)
    return sizes


def average_boosters(boosters: list[lgb.Booster]) -> lgb.Booster:
    """One booster whose raw score (and SHAP contributions) is the mean of ``boosters``'.

    Every member's trees are concatenated with their leaf (and internal) values divided by the
    member count; the header (features, objective) is the first member's, the members must share it.
    """
    if not boosters:
        raise TrainingError("average_boosters needs at least one booster")
    if len(boosters) == 1:
        return boosters[0]
    factor = 1.0 / len(boosters)
    header, tail = "", ""
    trees: list[str] = []
    for booster in boosters:
        text = booster.model_to_string()
        head, rest = text.split("\nTree=", 1)
        body, end = ("Tree=" + rest).split("\nend of trees", 1)
        if not header:
            header, tail = head, end
        elif _features_line(head) != _features_line(header):
            raise TrainingError("average_boosters: the members were trained on different features")
        trees.extend(_scaled_tree(block.strip("\n"), factor) for block in _TREE_LINE.split(body)[1:])
    # Without tree_sizes LightGBM parses the trees in sequence; saving again writes them anew.
    header = "\n".join(line for line in header.split("\n") if not line.startswith("tree_sizes="))
    numbered = "".join(f"Tree={i}\n{block}\n\n\n" for i, block in enumerate(trees))
    merged = f"{header}\n{numbered}end of trees{tail}"
    return lgb.Booster(model_str=lgb.Booster(model_str=merged).model_to_string())


def _features_line(header: str) -> str:
    return next((line for line in header.split("\n") if line.startswith("feature_names=")), "")


def _scaled_tree(block: str, factor: float) -> str:
    lines = []
    for line in block.split("\n"):
        key, _, values = line.partition("=")
        scale = key in ("leaf_value", "internal_value") and values
        lines.append(f"{key}=" + " ".join(repr(float(v) * factor) for v in values.split(" ")) if scale else line)
    return "\n".join(lines)


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

    def fit(
        self,
        X: pd.DataFrame,
        y: pd.Series,
        *,
        valid: tuple[pd.DataFrame, pd.Series] | None = None,
        dates: pd.Series | None = None,
        valid_dates: pd.Series | None = None,
    ) -> Self:
        """Train on ``(X, y)``; with ``valid``, stop early on its metric and keep the best round.

        Args:
            X: feature frame; its column order becomes the model's signature.
            y: labels aligned with ``X`` by position: 0/1 (binary), the cross-sectional label
                (regression) or integer grades (lambdarank).
            valid: optional held-out ``(X, y)`` with the same columns, for early stopping.
            dates: each row's date; lambdarank needs them (one query per date, rows sorted by date).
            valid_dates: the same for ``valid``.

        Returns:
            ``self``, fitted: one booster, or the average of ``n_seeds`` (:func:`average_boosters`).
        """
        names = [str(c) for c in X.columns]
        if len(set(names)) != len(names):
            raise TrainingError(f"duplicate feature columns: {sorted({n for n in names if names.count(n) > 1})}")
        objective = self.params.objective
        _check_labels(X, y, "train", objective)
        train_set = _dataset(X, y, dates, objective, "train", feature_name=names)
        valid_sets: list[lgb.Dataset] = []
        callbacks: list[Any] = []
        if valid is not None:
            vx, vy = valid
            _check_columns(names, vx)
            _check_labels(vx, vy, "valid", objective)
            valid_sets.append(_dataset(vx, vy, valid_dates, objective, "valid", reference=train_set))
            callbacks.append(lgb.early_stopping(self.params.early_stopping_rounds, verbose=False))
        members = [
            lgb.train(
                self.params.lgb_params(member),
                train_set,
                num_boost_round=self.params.n_estimators,
                valid_sets=valid_sets,
                valid_names=["valid"] * len(valid_sets),
                callbacks=callbacks,
            )
            for member in range(self.params.n_seeds)
        ]
        self._booster = average_boosters(members)
        self._feature_names = names
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """What a server answers (``Booster.predict``): P(label = 1) for binary, the score otherwise."""
        self.check_signature(X)
        return np.asarray(self.booster.predict(X), dtype=np.float64)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """P(label = 1) for each row of ``X`` (columns must match :attr:`feature_names` exactly).

        Raises:
            TrainingError: the model is not a binary classifier.
        """
        if self.params.objective != "binary":
            raise TrainingError(f"a {self.params.objective} model has no probabilities: use predict() or score()")
        return self.predict(X)

    def score(self, X: pd.DataFrame) -> np.ndarray:
        """Raw margin (log-odds for binary) for each row; what SHAP contributions sum to."""
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


def _dataset(
    X: pd.DataFrame, y: pd.Series, dates: pd.Series | None, objective: str, what: str, **kwargs: Any
) -> lgb.Dataset:
    """A LightGBM dataset of ``(X, y)``; for lambdarank, with one query per date."""
    group = None
    if objective == "lambdarank":
        if dates is None:
            raise TrainingError(f"{what}: lambdarank needs each row's date (one query per date)")
        if len(dates) != len(X):
            raise TrainingError(f"{what}: X has {len(X)} rows but dates has {len(dates)}")
        group = query_sizes(dates)
    return lgb.Dataset(X, label=np.asarray(y, dtype=np.float64), group=group, free_raw_data=True, **kwargs)


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
