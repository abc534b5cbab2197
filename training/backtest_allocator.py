"""The ``allocator`` strategy of a backtest job: the registered allocator champion, traded like any book.

The job loads the MLflow-registered ``allocator`` model at its ``champion`` alias
(:data:`feature_repo.backtests.ALLOCATOR_MODEL`, :data:`~feature_repo.backtests.ALLOCATOR_ALIAS`)
as a pyfunc, exactly as the allocator server loads it: the code and policy layers that were
registered run, whatever the training package looks like now. At each rebalance it answers for
the universe's names with a close on the signal session, from their features of that session (the
model's feature service, read point in time through Feast's ``get_historical_features``) and the
book held after the previous trade; the job's book then trades those targets under the same
schedule, drift and cost model as every other strategy (:func:`training.evaluation.target_book.target_book`).

Refusals (a :class:`~training.errors.TrainingError` that fails the job with its reason, before any
data is read): no champion registered, a policy trained on a fixed universe that does not hold
every requested ticker, or a fixed-width policy narrower than the universe.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_repo.backtests import ALLOCATOR_ALIAS, ALLOCATOR_MODEL, allocator_refusal
from feature_repo.definitions import ALLOCATOR_SERVICE, EVENT_TIMESTAMP
from feature_repo.settings import FeatureStoreSettings
from feature_repo.store import FeatureRepo
from feature_repo.tables import TICKER
from training.errors import TrainingError
from training.evaluation.liquidity import FloatArray

TRACKING_ENV: Final = "PORTFOLIO_OS_TRACKING_URI"
Decide = Callable[[int, FloatArray], FloatArray]


@dataclass(frozen=True, eq=False)
class ChampionAllocator:
    """The champion's version, its pyfunc and what it was trained for (its ``model_config``)."""

    version: str
    model: Any
    tickers: tuple[str, ...]
    features: tuple[str, ...]
    width: int | None
    feature_service: str

    def describe(self) -> str:
        """One phrase for the result and the tear sheet."""
        kind = f"fixed width {self.width}" if self.width is not None else f"trained on {len(self.tickers)} tickers"
        return f"{ALLOCATOR_MODEL} v{self.version} ({ALLOCATOR_ALIAS}, {kind}, features {self.feature_service})"


@dataclass(frozen=True, eq=False)
class AllocatorInputs:
    """The champion and its features on the job's grid: ``values[t, i, f]`` known at the close of session t."""

    champion: ChampionAllocator
    values: npt.NDArray[np.float64]
    tickers: tuple[str, ...]


def tracking_uri(data_dir: Path) -> str:
    """``$PORTFOLIO_OS_TRACKING_URI`` (the chart sets it), else the SQLite registry under the data folder."""
    return os.environ.get(TRACKING_ENV) or f"sqlite:///{(data_dir / 'mlflow.db').resolve()}"


def load_champion(uri: str) -> ChampionAllocator:
    """The registered allocator at its champion alias, loaded as the allocator server loads it.

    Raises:
        TrainingError: no ``allocator`` model or no champion alias at ``uri`` (named), or a model
            whose configuration lacks its tickers or features.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        found = client.get_model_version_by_alias(ALLOCATOR_MODEL, ALLOCATOR_ALIAS)
    except MlflowException as e:
        raise TrainingError(
            f"strategy 'allocator' needs a registered {ALLOCATOR_MODEL} model at its {ALLOCATOR_ALIAS} alias; "
            f"the registry at {uri} has none (run the allocate stage first): {e.message}"
        ) from e
    version = str(found.version)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{ALLOCATOR_MODEL}/{version}")
    config = dict(model.model_config or {})
    if not config.get("tickers") or not config.get("features"):
        raise TrainingError(f"{ALLOCATOR_MODEL} v{version} has no tickers or features in its model_config")
    width = config.get("max_assets")
    return ChampionAllocator(
        version=version,
        model=model,
        tickers=tuple(str(t) for t in config["tickers"]),
        features=tuple(str(f) for f in config["features"]),
        width=None if width is None else int(width),
        feature_service=str(found.tags.get("feature_service", ALLOCATOR_SERVICE)),
    )


def check_coverage(champion: ChampionAllocator, universe: list[str]) -> None:
    """Refuse a universe the champion cannot allocate (module docstring).

    Raises:
        TrainingError: tickers outside a fixed universe (named), or more names than a fixed width.
    """
    refusal = allocator_refusal(champion.version, champion.width, champion.tickers, universe)
    if refusal is not None:
        raise TrainingError(refusal)


def feature_values(
    repo: FeatureRepo, champion: ChampionAllocator, close: pd.DataFrame, start: date, end: date
) -> npt.NDArray[np.float64]:
    """The champion's features on ``close``'s grid (sessions ``start..end`` with a close; NaN elsewhere).

    Point in time: the entity timestamp is the session, so each row holds the features known at
    that session's close (Feast's ``get_historical_features``, the allocation stage's own read).

    Raises:
        TrainingError: the feature service lacks a feature the model reads.
    """
    index = pd.DatetimeIndex(close.index)
    inside = (index >= pd.Timestamp(start)) & (index <= pd.Timestamp(end))
    priced = close.notna().to_numpy() & inside[:, None]
    rows, cols = np.nonzero(priced)
    entity = pd.DataFrame(
        {
            TICKER: np.asarray(close.columns)[cols],
            EVENT_TIMESTAMP: pd.DatetimeIndex(index[rows]).tz_localize("UTC"),
        }
    )
    joined = repo.historical(champion.feature_service, entity)
    missing = [f for f in champion.features if f not in joined.columns]
    if missing:
        raise TrainingError(
            f"{ALLOCATOR_MODEL} v{champion.version} reads {missing}, which feature service "
            f"{champion.feature_service} does not serve"
        )
    stamps = pd.DatetimeIndex(pd.to_datetime(joined[EVENT_TIMESTAMP]))
    if stamps.tz is not None:
        stamps = stamps.tz_convert(None)
    t = index.get_indexer(stamps.normalize())
    i = pd.Index(close.columns).get_indexer(pd.Index(joined[TICKER]))
    values = np.full((len(index), close.shape[1], len(champion.features)), np.nan)
    values[t, i, :] = joined[list(champion.features)].to_numpy(np.float64)
    return values


def champion_for(data_dir: Path, universe: list[str]) -> ChampionAllocator:
    """The champion, checked against the universe (the job's first step: it refuses before reading data).

    Raises:
        TrainingError: no champion, or a universe it does not cover.
    """
    champion = load_champion(tracking_uri(data_dir))
    check_coverage(champion, universe)
    return champion


def allocator_inputs(
    data_dir: Path, champion: ChampionAllocator, close: pd.DataFrame, start: date, end: date
) -> AllocatorInputs:
    """The champion's features over ``start..end`` from the data folder's feature store.

    Raises:
        TrainingError: features the model reads that its service does not serve.
    """
    repo = FeatureRepo.open(FeatureStoreSettings(data_dir=str(data_dir)))
    values = feature_values(repo, champion, close, start, end)
    return AllocatorInputs(champion=champion, values=values, tickers=tuple(str(c) for c in close.columns))


def allocator_decide(inputs: AllocatorInputs, close: pd.DataFrame) -> Decide:
    """``decide(signal position, book held)``: the champion's weights for the names priced at that close."""
    priced = close.notna().to_numpy()
    names = np.asarray(inputs.tickers, dtype=object)
    features = list(inputs.champion.features)

    def decide(position: int, current: FloatArray) -> FloatArray:
        held = np.flatnonzero(priced[position])
        target = np.zeros(len(names))
        if held.size == 0:
            return target
        rows = pd.DataFrame(inputs.values[position][held], columns=features)
        rows.insert(0, "ticker", names[held].astype(str))
        rows["current_weight"] = current[held]
        try:
            answer = inputs.champion.model.predict(rows)
        except ValueError as e:  # the model refuses a request it cannot answer (named in its message)
            raise TrainingError(
                f"{ALLOCATOR_MODEL} v{inputs.champion.version} on {close.index[position].date()}: {e}"
            ) from e
        target[held] = np.asarray(answer["weight"], dtype=np.float64)
        return target

    return decide
