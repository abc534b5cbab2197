"""The data of a backtest job: adjusted closes, liquidity and the data's label, from the offline store.

Closes are linked across series breaks (a reused code or a masked corporate action earns 0 there,
never the jump), exactly as the signal and allocation stages build them, by the ground floor's
:func:`feature_repo.transforms.panel.link_across_breaks`. Everything up to the backtest's end is
read, so strategies see the history before the start (momentum's year, an optimiser's lookback).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

from feature_repo.tables import DATE, SOURCE, SYNTHETIC, TICKER
from feature_repo.transforms.panel import link_across_breaks
from training.errors import TrainingError
from training.evaluation.liquidity import Liquidity, liquidity_panels, traded_value_panel
from training.store import OfflineStore

if TYPE_CHECKING:
    from training.backtest_allocator import AllocatorInputs

OFFLINE_STORE: Final = "offline.duckdb"
PRICE_COLUMNS: Final = [TICKER, DATE, "close", "adj_close", "volume", SOURCE, SYNTHETIC]


@dataclass(frozen=True, eq=False)
class JobData:
    """Wide adjusted closes (sessions x tickers), liquidity on the same grid, and where the data came from.

    ``allocator``: for the ``allocator`` strategy, the champion and its features on the same grid.
    """

    close: pd.DataFrame
    liquidity: Liquidity | None
    label: str
    allocator: AllocatorInputs | None = None


@dataclass(frozen=True)
class Catalogue:
    """What the offline store holds: its first and last session, its tickers and its label."""

    first_session: date
    last_session: date
    tickers: tuple[str, ...]
    label: str


def offline_store_path(data_dir: Path) -> Path:
    """The offline store under the data folder (the training pipeline's own location)."""
    return data_dir / OFFLINE_STORE


def _read_prices(data_dir: Path, tickers: list[str] | None, end: date | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    path = offline_store_path(data_dir)
    if not path.exists():
        raise TrainingError(f"no offline store at {path}: run the ingest stage first")
    where: list[str] = []
    params: list[object] = []
    if tickers is not None:
        where.append(f"{TICKER} IN ({', '.join('?' for _ in tickers)})")
        params.extend(tickers)
    if end is not None:
        where.append(f"{DATE} <= ?")
        params.append(pd.Timestamp(end))
    with OfflineStore(path, read_only=True) as store:
        prices = store.read("prices", " AND ".join(where) or None, params or None, columns=PRICE_COLUMNS)
        breaks = store.read("series_breaks")
    if prices.empty:
        raise TrainingError("the offline store holds no prices for the backtest: run the ingest stage first")
    return prices, breaks


def label_of(prices: pd.DataFrame) -> str:
    """``SYNTHETIC data: ...`` when any row was generated, else ``REAL data: <sources>``."""
    sources = ", ".join(sorted({str(s).split(":")[0] for s in prices[SOURCE].dropna().unique()})[:5])
    if bool(prices[SYNTHETIC].fillna(False).astype(bool).any()):
        return f"SYNTHETIC data: {sources}"
    return f"REAL data: {sources}"


def load_job_data(data_dir: Path, tickers: list[str], end: date, *, adv_sessions: int) -> JobData:
    """Closes and liquidity of ``tickers`` from the first stored session through ``end``.

    Raises:
        TrainingError: no offline store or prices, or tickers the store does not hold (named).
    """
    prices, breaks = _read_prices(data_dir, tickers, end)
    missing = sorted(set(tickers) - set(prices[TICKER]))
    if missing:
        raise TrainingError(f"universe ticker(s) not in the offline store: {', '.join(missing[:10])}")
    close = prices.pivot(index=DATE, columns=TICKER, values="adj_close").sort_index()
    close.index = pd.DatetimeIndex(close.index)
    close = link_across_breaks(close, breaks).reindex(columns=sorted(tickers))
    has_volume = bool(prices["volume"].notna().any())
    liquidity = liquidity_panels(close, traded_value_panel(prices), sessions=adv_sessions) if has_volume else None
    return JobData(close=close, liquidity=liquidity, label=label_of(prices))


def read_catalogue(data_dir: Path) -> Catalogue:
    """The offline store's session range, tickers and label (published for the gateway's checks)."""
    prices, _ = _read_prices(data_dir, None, None)
    dates = pd.DatetimeIndex(prices[DATE])
    tickers = tuple(sorted(str(t) for t in np.unique(prices[TICKER].to_numpy())))
    return Catalogue(dates.min().date(), dates.max().date(), tickers, label_of(prices))
