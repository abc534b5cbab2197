"""Market-level views: the benchmark's regime history and each ticker's trailing daily returns.

Two materialised views serve the gateway's analytics without an offline read:

* ``market_regime``: one row per market (entity ``market``, the single key ``primary``: the run's
  benchmark), stamped at its last session, holding the whole regime history as arrays (sessions,
  label codes and the classifier's inputs) computed by :mod:`feature_repo.transforms.regime`. The
  online row is "the regime now" plus its history, read in one call.
* ``return_window``: one row per ticker, stamped at the calendar's last session, holding its daily
  simple returns (``ret_1d`` of the technical view, the one definition of a daily return) over the
  last :data:`RETURN_WINDOW_SESSIONS` sessions of the common calendar, NaN where it had none. The
  arrays of every ticker line up session by session, so a portfolio's history is a matrix product.

Sessions are stored as days since 1970-01-01 (int64). Nothing here looks past the last session:
both views are snapshots "as of" their event timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_repo.contract import RETURN_WINDOW_SESSIONS
from feature_repo.schema import FeatureSpec
from feature_repo.tables import DATE, TICKER
from feature_repo.transforms.regime import REGIMES, RegimeSeries, benchmark_returns, regime_series

MARKET_ENTITY: Final = "market"
PRIMARY_MARKET: Final = "primary"  # the one key: the benchmark the pipeline run measures by
REGIME_VIEW: Final = "market_regime"
RETURN_WINDOW_VIEW: Final = "return_window"

REGIME_FIELDS: Final[tuple[FeatureSpec, ...]] = (
    FeatureSpec("benchmark", "string", "Symbol of the benchmark the regime is read from."),
    FeatureSpec("sessions", "int64_list", "Every session with a benchmark return, days since 1970-01-01."),
    FeatureSpec("regime", "int64_list", "Regime per session: index into unknown, bull, bear, sideways."),
    FeatureSpec("trend", "float64_list", "Compound benchmark return over the trailing trend window."),
    FeatureSpec("volatility", "float64_list", "Std (ddof=1) of the daily benchmark returns over the vol window."),
    FeatureSpec("volatility_median", "float64_list", "Expanding median of the volatility up to each session."),
    FeatureSpec("trend_window", "int64", "Sessions of the trend window."),
    FeatureSpec("vol_window", "int64", "Sessions of the volatility window."),
)
RETURN_WINDOW_FIELDS: Final[tuple[FeatureSpec, ...]] = (
    FeatureSpec("returns", "float64_list", f"Daily simple returns over the last {RETURN_WINDOW_SESSIONS} sessions."),
    FeatureSpec("sessions", "int64_list", "The sessions of those returns, days since 1970-01-01."),
)
MARKET_VIEWS: Final[dict[str, tuple[str, tuple[FeatureSpec, ...]]]] = {
    REGIME_VIEW: (MARKET_ENTITY, REGIME_FIELDS),
    RETURN_WINDOW_VIEW: (TICKER, RETURN_WINDOW_FIELDS),
}


def _days(dates: npt.ArrayLike) -> npt.NDArray[np.int64]:
    return np.asarray(dates, dtype="datetime64[D]").astype(np.int64)


def regime_view_frame(close: pd.Series, symbol: str) -> pd.DataFrame:
    """The ``market_regime`` source row: the regime history of the benchmark ``close`` (by date).

    Raises:
        RegimeInputError: the benchmark cannot be classified (see :func:`regime_series`).
    """
    returns, dates = benchmark_returns(close)
    series = regime_series(returns, dates)
    codes = [REGIMES.index(label) for label in series.labels]
    row = {
        MARKET_ENTITY: PRIMARY_MARKET,
        DATE: pd.Timestamp(dates[-1]),
        "benchmark": symbol,
        "sessions": _days(dates).tolist(),
        "regime": codes,
        "trend": series.trend.tolist(),
        "volatility": series.volatility.tolist(),
        "volatility_median": series.volatility_median.tolist(),
        "trend_window": series.trend_window,
        "vol_window": series.vol_window,
    }
    return pd.DataFrame([row])


def return_window_frame(daily: pd.DataFrame, window: int = RETURN_WINDOW_SESSIONS) -> pd.DataFrame:
    """The ``return_window`` source rows from a (ticker, date, ret_1d) frame: the technical view's rows.

    The calendar is the frame's dates (the technical transform's sessions); a ticker gets a row when
    it has a return in the window, stamped at the calendar's last session.
    """
    wide = daily.pivot_table(index=DATE, columns=TICKER, values="ret_1d", aggfunc="last", dropna=False)
    wide = wide.sort_index().iloc[-window:]
    wide = wide.loc[:, wide.notna().any(axis=0)]
    if wide.empty:
        return pd.DataFrame(columns=[TICKER, DATE, *(f.name for f in RETURN_WINDOW_FIELDS)])
    days = _days(wide.index.to_numpy())
    values = wide.to_numpy(np.float64)
    return pd.DataFrame(
        {
            TICKER: wide.columns.astype(str),
            DATE: pd.Timestamp(wide.index[-1]),
            "returns": [values[:, j].tolist() for j in range(values.shape[1])],
            "sessions": [days.tolist()] * values.shape[1],
        }
    )


@dataclass(frozen=True, eq=False)
class RegimeHistory:
    """The regime history read back from a ``market_regime`` row: the series and its benchmark."""

    benchmark: str
    series: RegimeSeries


def regime_history(row: dict[str, Any]) -> RegimeHistory | None:
    """Decode a ``market_regime`` row (feature name -> value); None when the row is absent or empty."""
    sessions = row.get("sessions")
    if not row.get("benchmark") or not sessions:
        return None
    codes = np.asarray(row["regime"], dtype=np.int64)
    series = RegimeSeries(
        dates=np.asarray(sessions, dtype=np.int64).astype("datetime64[D]"),
        trend=_floats(row["trend"]),
        volatility=_floats(row["volatility"]),
        volatility_median=_floats(row["volatility_median"]),
        labels=np.asarray(REGIMES, dtype="<U8")[codes],
        trend_window=int(row["trend_window"]),
        vol_window=int(row["vol_window"]),
    )
    return RegimeHistory(benchmark=str(row["benchmark"]), series=series)


def _floats(values: Any) -> npt.NDArray[np.float64]:
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def session_date(days: int) -> np.datetime64:
    """A session stored as days since 1970-01-01, as a date."""
    return np.datetime64(int(days), "D")
