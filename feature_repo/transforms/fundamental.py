"""Fundamental features: valuation, quality and leverage ratios, point in time.

A quarterly report becomes usable from the session *after* its ``report_date`` (a filing made
during or after a session cannot have informed that session's close). Trailing-twelve-month
flows need four consecutive quarters, and that sum is visible only once the last of its four
reports is. Each session then takes, per ticker, the newest visible report (an as-of join that
never looks forward) and divides by that session's market capitalisation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_repo.schema import FUNDAMENTAL_FEATURES, FUNDAMENTAL_RATIOS
from feature_repo.tables import DATE, TICKER

FLOW_ITEMS = ("revenue", "net_income", "operating_cash_flow")
# Three quarter-ends back from the newest must fall within this many days for a valid TTM sum.
MAX_TTM_SPAN_DAYS = 300
# A report older than this is treated as missing rather than silently carried for years.
MAX_REPORT_AGE_DAYS = 400


def fundamental_features(
    prices: pd.DataFrame, fundamentals: pd.DataFrame, *, breaks: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Daily fundamental ratios for every (ticker, date) bar in ``prices``.

    Args:
        prices: rows with ``ticker``, ``date`` and the unadjusted ``close``.
        fundamentals: quarterly rows in :data:`feature_repo.tables.FUNDAMENTAL_COLUMNS`.
        breaks: series breaks: a bar after a break uses only reports visible from the break on
            (a reused code is another company; after a consolidation the old share count would
            misstate the market capitalisation).

    Returns:
        One row per price bar, sorted by ticker and date: ``ticker``, ``date`` and the
        features of :data:`feature_repo.schema.FUNDAMENTAL_FEATURES` (NaN where no report is
        visible yet).
    """
    reports = _trailing_twelve_months(fundamentals)
    bars = prices[[TICKER, DATE, "close"]].sort_values([DATE, TICKER], kind="stable")
    joined = pd.merge_asof(
        bars,
        reports.sort_values("visible_from", kind="stable"),
        left_on=DATE,
        right_on="visible_from",
        by=TICKER,
        direction="backward",
        allow_exact_matches=False,  # a report dated d is used from the session after d
    )
    age = (joined[DATE] - joined["visible_from"]).dt.days
    stale = (age > MAX_REPORT_AGE_DAYS) | (joined["visible_from"] < _segment_start(joined, breaks))
    age = age.where(~stale)
    joined.loc[stale, list(reports.columns.drop([TICKER, "visible_from"]))] = np.nan
    ratios = _ratios(joined)
    for spec in FUNDAMENTAL_RATIOS:
        by_date = ratios.groupby(joined[DATE])[spec.name]
        std = by_date.transform("std").replace(0.0, np.nan)
        ratios[f"{spec.name}_csz"] = (ratios[spec.name] - by_date.transform("mean")) / std
    ratios["days_since_report"] = age.fillna(-1).astype("int64")
    out = pd.concat([joined[[TICKER, DATE]], ratios[[s.name for s in FUNDAMENTAL_FEATURES]]], axis=1)
    return out.sort_values([TICKER, DATE], kind="stable").reset_index(drop=True)


def _segment_start(bars: pd.DataFrame, breaks: pd.DataFrame | None) -> pd.Series:
    """Per bar, the date of the latest series break at or before it (NaT where none)."""
    none = pd.Series(pd.NaT, index=bars.index, dtype="datetime64[ns]")
    if breaks is None or breaks.empty:
        return none
    cuts = breaks[[TICKER, DATE]].drop_duplicates().astype({DATE: "datetime64[ns]"})
    cuts = cuts.assign(_start=cuts[DATE]).sort_values(DATE, kind="stable")
    left = bars[[TICKER, DATE]].astype({DATE: "datetime64[ns]"}).assign(_row=np.arange(len(bars)))
    found = pd.merge_asof(left.sort_values(DATE, kind="stable"), cuts, on=DATE, by=TICKER, direction="backward")
    start = found.sort_values("_row")["_start"].to_numpy(dtype="datetime64[ns]")
    return pd.Series(start, index=bars.index)


def _trailing_twelve_months(fundamentals: pd.DataFrame) -> pd.DataFrame:
    """Per report: TTM flows, period-end stocks, and the date from which all of it is visible."""
    f = fundamentals.sort_values([TICKER, "period_end"], kind="stable").reset_index(drop=True)
    by_ticker = f.groupby(TICKER, sort=False)
    span = (f["period_end"] - by_ticker["period_end"].shift(3)).dt.days
    consecutive = span <= MAX_TTM_SPAN_DAYS
    out = f[[TICKER, "total_assets", "total_equity", "total_debt", "shares_outstanding"]].copy()
    for item in FLOW_ITEMS:
        ttm = by_ticker[item].rolling(4, min_periods=4).sum().reset_index(level=0, drop=True)
        out[f"{item}_ttm"] = ttm.where(consecutive)
    # The TTM sum is only known once the latest of its four reports is out.
    report_ns = f["report_date"].astype("int64")
    latest = report_ns.groupby(f[TICKER], sort=False).rolling(4, min_periods=1).max()
    out["visible_from"] = pd.to_datetime(latest.reset_index(level=0, drop=True).astype("int64"))
    return out


def _ratios(joined: pd.DataFrame) -> pd.DataFrame:
    market_cap = (joined["close"] * joined["shares_outstanding"]).where(lambda v: v > 0)
    equity = joined["total_equity"].where(joined["total_equity"] > 0)
    assets = joined["total_assets"].where(joined["total_assets"] > 0)
    return pd.DataFrame(
        {
            "earnings_yield": joined["net_income_ttm"] / market_cap,
            "book_to_price": joined["total_equity"] / market_cap,
            "sales_to_price": joined["revenue_ttm"] / market_cap,
            "cash_flow_yield": joined["operating_cash_flow_ttm"] / market_cap,
            "roe": joined["net_income_ttm"] / equity,
            "roa": joined["net_income_ttm"] / assets,
            "debt_to_equity": joined["total_debt"] / equity,
            "debt_to_assets": joined["total_debt"] / assets,
        },
        index=joined.index,
    )
