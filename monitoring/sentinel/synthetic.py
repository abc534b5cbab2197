"""SYNTHETIC sentinel inputs with planted anomalies, for tests and ``bench/sentinel.py``.

The rows are random numbers shaped like the sentinel's inputs (:data:`INPUT_COLUMNS`); no quality
figure is ever reported on them. Planting writes a known fault into chosen (ticker, session) rows,
so a test can check the sentinel finds it and names the statistic behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import pandas as pd

from feature_repo.tables import DATE, TICKER
from monitoring.sentinel.statistics import INPUT_COLUMNS, SESSIONS_PER_YEAR

Fault = Literal["return", "range", "volume", "missing", "stale"]
# Which statistic each planted fault should move.
FAULT_STATISTIC: Final[dict[str, str]] = {
    "return": "return_z",
    "range": "range_z",
    "volume": "volume_z",
    "missing": "missing_share",
    "stale": "staleness",
}
STALE_SESSIONS: Final = 8


@dataclass(frozen=True)
class Planted:
    """One planted fault: the row it shows on and the statistic it should drive."""

    ticker: str
    date: pd.Timestamp
    fault: Fault

    @property
    def statistic(self) -> str:
        return FAULT_STATISTIC[self.fault]


def synthetic_inputs(n_tickers: int, n_sessions: int, seed: int = 0) -> pd.DataFrame:
    """Clean SYNTHETIC inputs: ``n_tickers`` x ``n_sessions`` business days from 2020-01-01."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=n_sessions)
    tickers = [f"SYN{i:04d}" for i in range(n_tickers)]
    n = n_tickers * n_sessions
    vol = np.repeat(rng.uniform(0.15, 0.6, n_tickers), n_sessions)
    ret = rng.standard_t(5, n) * vol / np.sqrt(SESSIONS_PER_YEAR) * np.sqrt(3 / 5)
    klen = np.abs(ret) + rng.gamma(2.0, 0.004, n) * vol / 0.3
    traded = np.repeat(rng.normal(14.0, 2.0, n_tickers), n_sessions) + rng.normal(0.0, 0.1, n)
    return pd.DataFrame(
        {
            TICKER: np.repeat(tickers, n_sessions),
            DATE: np.tile(dates, n_tickers),
            "ret_1d": ret,
            "vol_21d": vol * rng.uniform(0.9, 1.1, n),
            "klen": klen,
            "volume_zscore_21d": rng.normal(0.0, 1.0, n),
            # A few features are missing in warm-up and for some rows: a small, varying share.
            "missing_share": rng.choice([0.0, 0.0, 0.0, 1 / 31, 2 / 31], n),
            "traded_value": traded,
        }
    )[list(INPUT_COLUMNS)]


def plant(inputs: pd.DataFrame, faults: list[Planted]) -> pd.DataFrame:
    """A copy of ``inputs`` with each fault written into its (ticker, date) row (and before it, for staleness)."""
    out = inputs.copy()
    for fault in faults:
        row = (out[TICKER] == fault.ticker) & (out[DATE] == fault.date)
        if not row.any():
            raise ValueError(f"no row for {fault.ticker} on {fault.date:%Y-%m-%d} to plant {fault.fault} in")
        if fault.fault == "return":
            out.loc[row, "ret_1d"] = 25.0 * out.loc[row, "vol_21d"] / np.sqrt(SESSIONS_PER_YEAR)
        elif fault.fault == "range":
            out.loc[row, "klen"] = out.loc[row, "klen"] * 12.0 + 0.3
        elif fault.fault == "volume":
            out.loc[row, "volume_zscore_21d"] = 14.0
        elif fault.fault == "missing":
            out.loc[row, "missing_share"] = 0.9
        else:  # stale: the close stopped changing for the sessions up to the date
            ticker = out[TICKER] == fault.ticker
            window = (
                ticker & (out[DATE] <= fault.date) & (out[DATE] > fault.date - pd.tseries.offsets.BDay(STALE_SESSIONS))
            )
            out.loc[window, "ret_1d"] = 0.0
    return out
