"""Corporate actions -> cumulative adjustment factors -> adjusted closes and volumes.

CRSP/Qlib style: each action has a price factor (what a pre-ex-date price is multiplied by to be
comparable with post-ex-date prices) and a volume factor (the same for share counts). A bar's
cumulative factor is the product over the actions of its ticker with an ex-date *after* the bar, so
the latest bars keep factor 1 and ``adj_close`` equals the raw close there. Factors are always
recomputed from the raw inputs, never compounded onto stored values, so re-running is idempotent.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_repo.tables import ADJUSTMENT_FACTOR_COLUMNS, DATE, TICKER
from training.corporate_actions.actions import RATIO_KINDS
from training.errors import IngestError, InputProblem

__all__ = ["action_factors", "apply_factors", "bar_factors", "with_adjusted_volume"]

FloatArray = npt.NDArray[np.float64]
# Days since the epoch fit in 20 bits either side; a ticker code times this never collides with a day.
_DAY_SPAN: Final = 1 << 21


def action_factors(prices: pd.DataFrame, actions: pd.DataFrame) -> pd.DataFrame:
    """The :data:`~feature_repo.tables.ADJUSTMENT_FACTOR_COLUMNS` rows for ``actions`` on ``prices``.

    Args:
        prices: raw bars with ``ticker``, ``date`` and ``close`` (the close a cash amount compares to).
        actions: the :mod:`~training.corporate_actions.actions` frame plus an ``origin`` column;
            actions of tickers without bars, or dated before a ticker's first bar, adjust nothing and
            are dropped.

    Raises:
        IngestError: a cash amount is not below the last close before its ex-date (the factor would
            be zero or negative); names the action's file, line and field.
    """
    known = actions[actions[TICKER].isin(pd.unique(prices[TICKER]))]
    if known.empty:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in ADJUSTMENT_FACTOR_COLUMNS})
    closes = prices.loc[prices["close"].gt(0), [TICKER, DATE, "close"]]
    # The last raw close strictly before each ex-date, per ticker.
    before = pd.merge_asof(
        known.sort_values(DATE, kind="stable"),
        closes.sort_values(DATE, kind="stable").rename(columns={DATE: "bar_date", "close": "close_before"}),
        left_on=DATE,
        right_on="bar_date",
        by=TICKER,
        allow_exact_matches=False,
        direction="backward",
    )
    before = before[before["close_before"].notna()]
    ratio, amount, close = (before[c].to_numpy(dtype=np.float64) for c in ("ratio", "amount", "close_before"))
    by_ratio = before["kind"].isin(RATIO_KINDS).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        cash = (close - amount) / close
        price = np.where(by_ratio, 1.0 / ratio, np.where(np.isnan(amount), ratio, cash))
    _refuse_non_positive(before, price)
    out = before.assign(
        price_factor=price,
        volume_factor=np.where(by_ratio, ratio, 1.0),
    )
    out = out.sort_values([TICKER, DATE, "kind"], kind="stable").reset_index(drop=True)
    return _with_cumulative(out).loc[:, list(ADJUSTMENT_FACTOR_COLUMNS)]


def bar_factors(prices: pd.DataFrame, factors: pd.DataFrame) -> tuple[FloatArray, FloatArray]:
    """Each bar's cumulative (price, volume) factor, aligned with ``prices``' rows (1 where none)."""
    n = len(prices)
    if factors.empty or n == 0:
        return np.ones(n), np.ones(n)
    # One cumulative factor per (ticker, ex-date): equal for every action on that day by construction.
    steps = factors.groupby([TICKER, DATE], sort=True)[["cum_price_factor", "cum_volume_factor"]].first()
    names = pd.Index(steps.index.get_level_values(TICKER).unique())
    step_key = _key(
        names.get_indexer(steps.index.get_level_values(TICKER)), pd.DatetimeIndex(steps.index.get_level_values(DATE))
    )
    bar_code = names.get_indexer(prices[TICKER])
    bar_key = _key(bar_code, pd.DatetimeIndex(prices[DATE]))
    # The first step strictly after the bar; it applies if it belongs to the bar's ticker.
    nxt = np.searchsorted(step_key, bar_key, side="right")
    hit = (bar_code >= 0) & (nxt < len(step_key))
    hit[hit] = step_key[nxt[hit]] // _DAY_SPAN == bar_code[hit]
    price, volume = np.ones(n), np.ones(n)
    cum = steps.to_numpy(dtype=np.float64)
    price[hit], volume[hit] = cum[nxt[hit], 0], cum[nxt[hit], 1]
    return price, volume


def apply_factors(prices: pd.DataFrame, factors: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``prices`` whose ``adj_close`` is the given ``adj_close`` times each bar's price factor.

    The raw ``open``/``high``/``low``/``close``/``volume`` are returned unchanged; without factors the
    input frame itself is returned (copying millions of rows for nothing is most of the cost).
    """
    if factors.empty:
        return prices
    price, _ = bar_factors(prices, factors)
    return _scaled(prices, "adj_close", price)


def with_adjusted_volume(prices: pd.DataFrame, factors: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``prices`` (in memory, for feature computation) whose ``volume`` is split-adjusted.

    The stored volume stays raw; traded value (raw close x raw volume) needs no adjustment at all.
    """
    if factors.empty:
        return prices
    _, volume = bar_factors(prices, factors)
    return _scaled(prices, "volume", volume)


def _scaled(prices: pd.DataFrame, column: str, factor: FloatArray) -> pd.DataFrame:
    """A copy of ``prices`` whose ``column`` is multiplied by each bar's ``factor`` (as float64)."""
    out = prices.copy()
    out[column] = prices[column].to_numpy(dtype=np.float64) * factor
    return out


def _with_cumulative(factors: pd.DataFrame) -> pd.DataFrame:
    """Add the cumulative factors: per ticker, the product over this ex-date and every later one."""
    day = factors.groupby([TICKER, DATE], sort=True)[["price_factor", "volume_factor"]].prod()
    log = pd.DataFrame(np.log(day.to_numpy(dtype=np.float64)), index=day.index, columns=day.columns)
    # Reverse cumulative sum of logs within each ticker = product from this date to the last.
    total = log.groupby(level=TICKER).transform("sum")
    later = (total - log.groupby(level=TICKER).cumsum() + log).to_numpy(dtype=np.float64)
    cum = pd.DataFrame(np.exp(later), index=day.index, columns=["cum_price_factor", "cum_volume_factor"])
    return factors.join(cum, on=[TICKER, DATE])


def _refuse_non_positive(actions: pd.DataFrame, price: FloatArray) -> None:
    bad = np.flatnonzero(~(price > 0))
    if not len(bad):
        return
    problems = []
    for i in bad:
        row = actions.iloc[i]
        field = "ratio" if pd.notna(row["ratio"]) else "amount"
        value = row[field]
        problems.append(
            InputProblem(
                str(row["file"]),
                int(row["line"]),
                field,
                f"{row['kind']} of {value:g} is not below the last close before the ex-date "
                f"({row['close_before']:g} on {row['bar_date'].date()}): the factor would not be positive",
            )
        )
    raise IngestError(problems)


def _key(code: npt.NDArray[np.intp], dates: pd.DatetimeIndex) -> npt.NDArray[np.int64]:
    days = dates.to_numpy(dtype="datetime64[D]").astype(np.int64) + _DAY_SPAN // 2
    return code.astype(np.int64) * _DAY_SPAN + days


def _dtype(column: str) -> str:
    if column == DATE:
        return "datetime64[ns]"
    return "float64" if column not in (TICKER, "kind", "origin") else "object"
