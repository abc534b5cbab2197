"""Daily per-ticker statistics for the sentinel, from the feature files, point-in-time.

Every statistic of a (ticker, session) row uses that session and earlier ones only: baselines are
trailing windows of previous sessions, so a flag on a date never depends on later data.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from feature_repo.data_quality import STATISTIC_NAMES, TICKER_CLASSES
from feature_repo.definitions import CREATED_TIMESTAMP, EVENT_TIMESTAMP, feature_file
from feature_repo.tables import DATE, TICKER
from monitoring.errors import MonitoringError

# The inputs one row of statistics is computed from (see :func:`daily_statistics`).
INPUT_COLUMNS: Final[tuple[str, ...]] = (
    TICKER,
    DATE,
    "ret_1d",
    "vol_21d",
    "klen",
    "volume_zscore_21d",
    "missing_share",
    "traded_value",
)
RANGE_WINDOW: Final = 21
RANGE_MIN_PERIODS: Final = 10
SESSIONS_PER_YEAR: Final = 252


def load_inputs(data_dir: Path) -> pd.DataFrame:
    """The sentinel's inputs from the technical view (and the alpha view's range and liquidity when present).

    Raises:
        MonitoringError: there is no technical feature file.
    """
    technical_path = Path(feature_file(str(data_dir), "technical_features"))
    if not technical_path.exists():
        raise MonitoringError(f"no feature file for technical_features at {technical_path}: run the features stage")
    technical = pq.read_table(technical_path).to_pandas()
    features = [c for c in technical.columns if c not in (TICKER, EVENT_TIMESTAMP, CREATED_TIMESTAMP)]
    frame = pd.DataFrame(
        {
            TICKER: technical[TICKER],
            DATE: _naive_dates(technical[EVENT_TIMESTAMP]),
            "ret_1d": technical["ret_1d"],
            "vol_21d": technical["vol_21d"],
            "volume_zscore_21d": technical["volume_zscore_21d"],
            "missing_share": technical[features].isna().mean(axis=1),
        }
    )
    alpha_path = Path(feature_file(str(data_dir), "alpha_features"))
    if alpha_path.exists():
        # Two columns of a 163-wide view: read only those.
        alpha = pq.read_table(alpha_path, columns=[TICKER, EVENT_TIMESTAMP, "klen", "log_med_value_20"]).to_pandas()
        alpha = alpha.assign(**{DATE: _naive_dates(alpha[EVENT_TIMESTAMP])}).rename(
            columns={"log_med_value_20": "traded_value"}
        )
        frame = frame.merge(alpha[[TICKER, DATE, "klen", "traded_value"]], on=[TICKER, DATE], how="left")
    else:
        frame = frame.assign(klen=np.nan, traded_value=np.nan)
    return frame[list(INPUT_COLUMNS)]


def _naive_dates(stamps: pd.Series) -> pd.Series:
    ts = pd.to_datetime(stamps)
    if ts.dt.tz is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return ts.dt.normalize()


def daily_statistics(inputs: pd.DataFrame) -> pd.DataFrame:
    """One row per (ticker, session): ``ticker, date`` and the statistics of :data:`STATISTIC_NAMES`.

    Args:
        inputs: the columns of :data:`INPUT_COLUMNS` (``klen``/``traded_value`` may be all missing).
    """
    missing = [c for c in INPUT_COLUMNS if c not in inputs.columns]
    if missing:
        raise MonitoringError(f"sentinel inputs lack the columns {missing}")
    frame = inputs.sort_values([TICKER, DATE], kind="stable").reset_index(drop=True)
    tickers = frame[TICKER]
    by = frame.groupby(tickers, sort=False)
    # The previous session's volatility: today's return must not be inside its own yardstick.
    daily_sd = by["vol_21d"].shift(1) / math.sqrt(SESSIONS_PER_YEAR)
    return_z = frame["ret_1d"] / daily_sd.where(daily_sd > 0)
    previous_range = by["klen"].shift(1)
    rolling = previous_range.groupby(tickers, sort=False).rolling(RANGE_WINDOW, min_periods=RANGE_MIN_PERIODS)
    range_mean = rolling.mean().reset_index(level=0, drop=True)
    range_sd = rolling.std().reset_index(level=0, drop=True)
    range_z = (frame["klen"] - range_mean) / range_sd.where(range_sd > 0)
    out = pd.DataFrame(
        {
            TICKER: tickers,
            DATE: frame[DATE],
            "return_z": return_z,
            "range_z": range_z,
            "volume_z": frame["volume_zscore_21d"],
            "missing_share": frame["missing_share"],
            "staleness": _staleness(frame),
        }
    )
    out[list(STATISTIC_NAMES)] = out[list(STATISTIC_NAMES)].replace([np.inf, -np.inf], np.nan)
    return out


def _staleness(frame: pd.DataFrame) -> pd.Series:
    """Sessions since the close last changed, counting sessions without a bar (``frame`` sorted by ticker, date).

    Sessions are the dates any ticker has a row on; a ticker's first row counts as a change.
    """
    sessions = np.sort(frame[DATE].unique())
    position = pd.Series(np.searchsorted(sessions, frame[DATE].to_numpy()), index=frame.index, dtype="float64")
    by = position.groupby(frame[TICKER], sort=False)
    gap = (position - by.shift(1) - 1).fillna(0.0)
    changed = frame["ret_1d"].ne(0) | frame["ret_1d"].isna()
    last_change = position.where(changed).groupby(frame[TICKER], sort=False).ffill()
    return pd.Series(np.where(changed, gap, position - last_change), index=frame.index, dtype="float64")


def ticker_classes(inputs: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """Each ticker's liquidity tercile over ``[start, end]`` (``unknown`` without traded value).

    The median traded value of the window ranks the tickers; the top third is ``liquid``.
    """
    window = inputs[(inputs[DATE] >= start) & (inputs[DATE] <= end)]
    level = window.groupby(TICKER)["traded_value"].median()
    classes = pd.Series(TICKER_CLASSES[-1], index=pd.Index(inputs[TICKER].unique(), name=TICKER), dtype="object")
    known = level.dropna()
    if len(known) >= len(TICKER_CLASSES) - 1:
        # Highest traded value first: rank 0 is the most liquid.
        order = known.rank(ascending=False, method="first") - 1
        tercile = np.minimum((order * 3 // len(known)).astype(int), 2)
        classes.loc[known.index] = np.array([TICKER_CLASSES[t] for t in tercile], dtype="object")
    return classes
