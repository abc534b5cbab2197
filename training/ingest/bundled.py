"""The bundled real demo data: skfolio's S&P 500 dataset (20 US large caps, 1990-2022).

It ships inside the skfolio wheel, so the demo runs offline on real prices. It holds adjusted
closes only: ``open``/``high``/``low``/``volume`` are missing (NaN) and ``close`` equals
``adj_close``, which the health checks and features handle as a close-only source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from feature_repo import tables as t

SOURCE = "skfolio.sp500"
BENCHMARK_SYMBOL = "SP500"


@dataclass(frozen=True)
class MarketData:
    """Prices and benchmark levels in the contracts of :mod:`feature_repo.tables`."""

    prices: pd.DataFrame
    benchmark: pd.DataFrame


def wide_to_price_rows(wide: pd.DataFrame, source: str) -> pd.DataFrame:
    """Convert a dates x tickers frame of adjusted closes to price-contract rows (close-only)."""
    long = (
        wide.rename_axis(index=t.DATE, columns=t.TICKER)
        .reset_index()
        .melt(id_vars=t.DATE, var_name=t.TICKER, value_name="adj_close")
    )
    long = long[long["adj_close"].notna()]
    frame = pd.DataFrame(
        {
            t.TICKER: long[t.TICKER].astype(str).str.upper().to_numpy(),
            t.DATE: pd.to_datetime(long[t.DATE]).astype("datetime64[ns]").to_numpy(),
            "open": np.nan,
            "high": np.nan,
            "low": np.nan,
            "close": long["adj_close"].astype("float64").to_numpy(),
            "adj_close": long["adj_close"].astype("float64").to_numpy(),
            "volume": np.nan,
            t.SOURCE: source,
            t.SYNTHETIC: False,
        }
    )
    return frame.sort_values([t.TICKER, t.DATE], kind="stable").reset_index(drop=True)


def load_sp500(start: str | None = None, end: str | None = None) -> MarketData:
    """Load the bundled S&P 500 sample and its index, optionally cut to [start, end]."""
    # Imported here: skfolio pulls in scikit-learn and cvxpy, which only this loader needs.
    from skfolio.datasets import load_sp500_dataset, load_sp500_index

    wide = load_sp500_dataset().loc[start:end]
    index = load_sp500_index().loc[start:end]
    benchmark = pd.DataFrame(
        {
            "symbol": BENCHMARK_SYMBOL,
            t.DATE: pd.to_datetime(index.index).astype("datetime64[ns]"),
            "close": index.iloc[:, 0].astype("float64").to_numpy(),
            t.SOURCE: SOURCE,
            t.SYNTHETIC: False,
        }
    )
    return MarketData(prices=wide_to_price_rows(wide, SOURCE), benchmark=benchmark.reset_index(drop=True))
