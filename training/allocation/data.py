"""The allocation stage's inputs: closes, the allocator feature service (point in time) and the benchmark.

Features come from Feast's ``allocator_v1`` service through ``get_historical_features``, the same
service the gateway and the allocator server read online, so training and serving see one
definition. Out-of-sample scores of the signal models (written by the ``train`` stage) join as the
``score`` column when they exist; they cover the test segment only, so the RL observation never
uses them (RL trains on the train segment) and only the top-k strategy ranks on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from feature_repo.contract import ALLOCATOR_SERVICE
from feature_repo.definitions import EVENT_TIMESTAMP
from feature_repo.schema import ALLOCATOR_FEATURES
from feature_repo.store import FeatureRepo
from feature_repo.tables import DATE, TICKER
from training.allocation.panel import MarketPanel, panel_from_frames
from training.errors import TrainingError
from training.signals.config import SignalRunConfig
from training.signals.inputs import close_panel, point_in_time_universe, read_series_breaks, read_universe
from training.universe import Universe

SCORE: Final = "score"


@dataclass(frozen=True, eq=False)
class AllocationData:
    """The panel and where its segments start, as positions in it.

    Attributes:
        panel: every session from the first one the lookback needs to the test segment's end.
        train: positions ``[start, stop)`` of the train segment.
        valid: positions of the valid segment.
        test: positions of the test segment.
        has_scores: whether the ``score`` column holds the signal models' out-of-sample scores.
        dropped: tickers left out; always empty now. Names without a close on every session
            (listed later, delisted earlier, suspended) stay in the panel with its masks: with a
            universe rule, every ticker that is a member on some session of the window; without
            one, every listed ticker, a member whenever it has a close.
    """

    panel: MarketPanel
    train: tuple[int, int]
    valid: tuple[int, int]
    test: tuple[int, int]
    has_scores: bool
    dropped: tuple[str, ...] = ()


def scores_path(data_dir: Path) -> Path:
    """Where the train stage leaves its out-of-sample ensemble scores (date, ticker, score, segment)."""
    return data_dir / "signals" / "oos_scores.parquet"


def load_allocation_data(
    config: SignalRunConfig,
    offline_store: Path,
    repo: FeatureRepo,
    data_dir: Path,
    *,
    label: str,
    warmup: int,
    min_members: int = 2,
) -> AllocationData:
    """Closes of the universe, its allocator features and the benchmark, from ``warmup`` sessions before train.

    ``min_members``: with a universe rule, the fewest members any reconstitution date governing the
    segments may have (the allocation's top-k and the optimisers' cap set it).

    Raises:
        TrainingError: no prices, unknown tickers or benchmark, fewer than 2 names priced in the
            window, segments outside the data, or a universe rule with fewer than
            ``min_members`` members on some date (the date and count named).
    """
    prices, bench = read_universe(config, offline_store)
    breaks = read_series_breaks(offline_store)
    # A return across a series break (reused code, masked corporate action) counts 0, never the jump;
    # the panel also ends the series there (a forced exit at the last close before the break).
    close = close_panel(prices, breaks)
    universe = point_in_time_universe(config, offline_store, prices, min_members, "the allocation")
    close, members = _window(close, universe, config, warmup)
    features = _service_frame(repo, close, members)
    scores = _scores(data_dir)
    if scores is not None:
        features = features.merge(scores, on=[DATE, TICKER], how="left")
    names = [*ALLOCATOR_FEATURES, *([SCORE] if scores is not None else [])]
    bench.index = pd.DatetimeIndex(bench.index)
    panel = panel_from_frames(
        close, features, names, benchmark_close=bench, label=label, members=members, breaks=breaks
    )
    return AllocationData(
        panel=panel,
        train=_positions(panel, config.segments.train),
        valid=_positions(panel, config.segments.valid),
        test=_positions(panel, config.segments.test),
        has_scores=scores is not None,
    )


def _window(
    close: pd.DataFrame, universe: Universe | None, config: SignalRunConfig, warmup: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Closes and the member mask from ``warmup`` sessions before train to the test segment's end.

    Raises:
        TrainingError: fewer than ``warmup`` sessions before train, or fewer than 2 names in the window.
    """
    seg = config.segments
    train_start = int(close.index.searchsorted(pd.Timestamp(seg.train[0])))
    if train_start < warmup:
        raise TrainingError(
            f"the allocator needs {warmup} sessions before the train segment's start {seg.train[0]}, "
            f"the data hold {train_start}: move the train segment later"
        )
    close = close.loc[close.index[train_start - warmup] : pd.Timestamp(seg.test[1])]
    if universe is not None:
        members = universe.mask.loc[close.index[0] : close.index[-1]]
        members = members.loc[:, members.any(axis=0)]
        close = close.reindex(columns=members.columns)
    else:
        # A fixed list of names: each is a member whenever it has a close (listed later, delisted
        # earlier or suspended names are kept; the masks say when they may be held).
        close = close.loc[:, close.notna().any(axis=0)]
        members = pd.DataFrame(True, index=close.index, columns=close.columns)
    if close.shape[1] < 2:
        raise TrainingError(
            f"only {close.shape[1]} ticker(s) have a close in the allocation window "
            f"{close.index[0].date()}..{close.index[-1].date()} (or are ever members of its universe): "
            "an allocator needs at least 2"
        )
    return close, members


def _service_frame(repo: FeatureRepo, close: pd.DataFrame, members: pd.DataFrame) -> pd.DataFrame:
    dates = np.repeat(close.index.to_numpy(), close.shape[1])
    tickers = np.tile(close.columns.to_numpy(), close.shape[0])
    # Only where a name is a member, or becomes one the next session (the environment reads
    # features one session late): elsewhere it cannot be held, and on the ASX set this asks
    # Feast for a quarter of the (session x ever-member) grid.
    wanted = members | members.shift(-1, fill_value=False)
    keep = wanted.reindex(index=close.index, columns=close.columns, fill_value=False).to_numpy(bool).ravel()
    dates, tickers = dates[keep], tickers[keep]
    entity = pd.DataFrame({TICKER: tickers, EVENT_TIMESTAMP: pd.DatetimeIndex(dates).tz_localize("UTC")})
    joined = repo.historical(ALLOCATOR_SERVICE, entity)
    stamps = pd.to_datetime(joined[EVENT_TIMESTAMP])
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert(None)
    out = joined[[TICKER, *ALLOCATOR_FEATURES]].reset_index(drop=True)
    out.insert(0, DATE, stamps.dt.normalize().to_numpy())
    return out


def _scores(data_dir: Path) -> pd.DataFrame | None:
    path = scores_path(data_dir)
    if not path.exists():
        return None
    frame = pd.read_parquet(path, columns=[DATE, TICKER, SCORE])
    frame[DATE] = pd.DatetimeIndex(frame[DATE]).normalize()
    return frame


def _positions(panel: MarketPanel, bounds: tuple[object, object]) -> tuple[int, int]:
    start = panel.position(pd.Timestamp(str(bounds[0])))
    stop = int(np.searchsorted(panel.dates, np.datetime64(pd.Timestamp(str(bounds[1])).date(), "D"), side="right"))
    if stop <= start:
        raise TrainingError(f"segment {bounds[0]}..{bounds[1]} holds no session of the data")
    return start, stop
