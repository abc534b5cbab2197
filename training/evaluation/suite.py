"""The portfolio report of signal models against 12-1 momentum, 1-month reversal and equal weight.

Every score (each model's and each baseline's) is run through the same construction on the same
point-in-time universe, schedule and costs:

* the turnover-aware long-only top-k book (:mod:`training.evaluation.book`), net and gross, with
  its one-way turnover, the annual cost paid and its capacity (:mod:`training.evaluation.capacity`);
* a long-short book, top minus bottom ``long_short_quantile`` of the eligible names, re-formed at
  each rebalance, net and gross (costs on both legs, no borrow fee);
* the decile spread and rank IC of the score, overall, by calendar year and by liquidity tercile
  (ADV tercile of the name among the universe's members on that date).

Equal weight, the no-skill book, gets the long-only columns only; its gross daily returns are the
reference the excess returns and the capacity are measured against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from feature_repo.significance import newey_west_tstat
from feature_repo.tables import DATE, TICKER
from training.errors import TrainingError
from training.evaluation.baselines import momentum_12_1, short_term_reversal
from training.evaluation.book import BookRules, Schedule, book_backtest, equal_weight_book, long_short_book
from training.evaluation.capacity import Capacity, annual_excess, capacity
from training.evaluation.config import CostConfig, EvaluationConfig
from training.evaluation.liquidity import IntArray, Liquidity, TradeCosts, adv_terciles
from training.evaluation.metrics import SCORE, TARGET, per_date_statistics
from training.evaluation.topk import BacktestResult
from training.universe import restrict_to_members

EQUAL_WEIGHT = "equal_weight"
CAPACITY_SIZES = tuple(float(x) for x in np.geomspace(1e5, 1e10, 11))
TERCILES = ("liquid", "middle", "illiquid")
# Names a tercile needs on a date for its rank IC there (the signal metrics' own minimum).
MIN_TERCILE_NAMES = 5


@dataclass(frozen=True, eq=False)
class PortfolioData:
    """What every book is run on: closes, outcomes, universe and liquidity over a window.

    Attributes:
        close: wide adjusted closes (sessions x tickers).
        outcomes: long ``date, ticker, target`` (the h-session forward excess return).
        horizon: h, in sessions.
        window: first and last day evaluated.
        members: the point-in-time universe's daily mask; None when every name counts.
        liquidity: ADV and volatility on ``close``'s grid; None for flat costs without a cap.
    """

    close: pd.DataFrame
    outcomes: pd.DataFrame
    horizon: int
    window: tuple[pd.Timestamp, pd.Timestamp]
    members: pd.DataFrame | None = None
    liquidity: Liquidity | None = None


@dataclass(frozen=True)
class PortfolioSettings:
    """How every book is built and charged."""

    rules: BookRules
    costs: TradeCosts
    schedule: Schedule
    long_short_quantile: float = 0.1
    capacity_sizes: tuple[float, ...] = CAPACITY_SIZES

    @classmethod
    def from_config(
        cls, evaluation: EvaluationConfig, costs: CostConfig, window: tuple[pd.Timestamp, pd.Timestamp]
    ) -> PortfolioSettings:
        """The run config's ``signals.evaluation`` (with ``book``) and ``signals.costs`` over ``window``."""
        book = evaluation.book
        rules = BookRules(evaluation.top_k, book.buffer, book.max_replace, book.min_hold, book.adv_cap, book.book_aud)
        schedule = Schedule(evaluation.rebalance_every, window[0], window[1], evaluation.execution_lag)
        return cls(rules, TradeCosts.from_costs(costs), schedule)


@dataclass(frozen=True, eq=False)
class PortfolioReport:
    """The comparison table, rank IC by year and by liquidity tercile, and the books behind them."""

    table: pd.DataFrame
    rank_ic_by_year: pd.DataFrame
    rank_ic_by_tercile: pd.DataFrame
    books: dict[str, BacktestResult] = field(default_factory=dict)
    capacities: dict[str, Capacity] = field(default_factory=dict)


def baseline_scores(data: PortfolioData) -> dict[str, pd.DataFrame]:
    """12-1 momentum and 1-month reversal over the window, members only (point-in-time)."""
    first, last = data.window
    out = {}
    for name, scorer in (("momentum_12_1", momentum_12_1), ("reversal_1m", short_term_reversal)):
        scores = scorer(data.close)
        out[name] = scores[(scores[DATE] >= first) & (scores[DATE] <= last)]
    return out


def portfolio_report(
    scores: Mapping[str, pd.DataFrame],
    data: PortfolioData,
    settings: PortfolioSettings,
    *,
    with_capacity: bool = True,
) -> PortfolioReport:
    """Build every book of every score and of the baselines; one row each (module docstring).

    Args:
        scores: model name -> long ``date, ticker, score`` over the window.
        data: closes, outcomes, universe and liquidity.
        settings: construction and costs.
        with_capacity: also search each book's capacity (a backtest per size tried).

    Raises:
        TrainingError: as the books raise (a date with fewer than k eligible names, named).
    """
    # Rank IC and spreads are measured on the members only, as the books trade them.
    everything = {n: _members_only(s, data.members) for n, s in {**scores, **baseline_scores(data)}.items()}
    equal = equal_weight_book(
        data.close,
        costs=settings.costs,
        schedule=settings.schedule,
        members=data.members,
        liquidity=data.liquidity,
        adv_cap=settings.rules.adv_cap,
        book_aud=settings.rules.book_aud,
    )
    reference = equal.gross_returns
    rows, books, capacities, by_year, by_tercile = {}, {EQUAL_WEIGHT: equal}, {}, [], []
    for name, frame in everything.items():
        book = book_backtest(
            frame, data.close, rules=settings.rules, costs=settings.costs, schedule=settings.schedule,
            members=data.members, liquidity=data.liquidity,
        )  # fmt: skip
        short = long_short_book(
            frame, data.close, quantile=settings.long_short_quantile, costs=settings.costs,
            schedule=settings.schedule, members=data.members, liquidity=data.liquidity,
            book_aud=settings.rules.book_aud,
        )  # fmt: skip
        found = _capacity(frame, data, settings, reference) if with_capacity else None
        books[name] = book
        if found is not None:
            capacities[name] = found
        joined = _joined(frame, data)
        rows[name] = _row(book, reference, short, found, per_date_statistics(joined))
        by_year.append(rank_ic_by_year(joined, data.horizon).assign(model=name))
        by_tercile.append(rank_ic_by_tercile(joined, data).assign(model=name))
    rows[EQUAL_WEIGHT] = _row(equal, reference, None, None, None)
    table = pd.DataFrame.from_dict(rows, orient="index").astype("float64")
    table.index.name = "model"
    return PortfolioReport(
        table, pd.concat(by_year, ignore_index=True), pd.concat(by_tercile, ignore_index=True), books, capacities
    )


def _members_only(scores: pd.DataFrame, members: pd.DataFrame | None) -> pd.DataFrame:
    """Keep the rows whose ticker is a member on its date (the book would skip the others anyway)."""
    return scores if members is None else restrict_to_members(scores, members)


def _capacity(
    frame: pd.DataFrame, data: PortfolioData, settings: PortfolioSettings, reference: pd.Series
) -> Capacity | None:
    """The long-only book's capacity; None without liquidity (no size enters the costs).

    The ADV cap is left out of the search: a capped book at a large size is mostly cash, and the
    return of cash against the reference says nothing about what trading costs (in 2008 it beats
    the market). Without it the same names are held at every size and only the costs grow.
    """
    if data.liquidity is None:
        return None
    rules = settings.rules

    def run(book_aud: float) -> BacktestResult:
        sized = BookRules(rules.k, rules.buffer, rules.max_replace, rules.min_hold, None, book_aud)
        return book_backtest(
            frame, data.close, rules=sized, costs=settings.costs, schedule=settings.schedule,
            members=data.members, liquidity=data.liquidity,
        )  # fmt: skip

    return capacity(run, reference, sizes=settings.capacity_sizes)


def _row(
    book: BacktestResult,
    reference: pd.Series,
    short: BacktestResult | None,
    found: Capacity | None,
    per_date: pd.DataFrame | None,
) -> dict[str, float]:
    summary = book.metrics()
    row = {key: float(summary[key]) for key in ("sharpe", "gross_sharpe", "ann_return", "gross_ann_return")}
    row.update({key: float(summary[key]) for key in ("max_drawdown", "one_way_turnover", "cost_ann")})
    row["net_excess"] = annual_excess(book.returns, reference)
    row["gross_excess"] = annual_excess(book.gross_returns, reference)
    row["capacity_aud"] = found.book_aud if found is not None else math.nan
    short_summary = short.metrics() if short is not None else {}
    row["ls_sharpe"] = float(short_summary.get("sharpe", math.nan))
    row["ls_gross_sharpe"] = float(short_summary.get("gross_sharpe", math.nan))
    row["decile_spread"] = float(per_date["decile_spread"].mean()) if per_date is not None else math.nan
    row["rank_ic_mean"] = float(per_date["rank_ic"].mean()) if per_date is not None else math.nan
    return row


def _joined(scores: pd.DataFrame, data: PortfolioData) -> pd.DataFrame:
    """Scores joined to their realised targets (rows without either dropped)."""
    outcomes = data.outcomes[[DATE, TICKER, TARGET]]
    joined = scores[[DATE, TICKER, SCORE]].merge(outcomes, on=[DATE, TICKER], how="inner").dropna()
    if joined.empty:
        raise TrainingError("no score has a realised outcome in the window: nothing to evaluate")
    return joined


def rank_ic_by_year(joined: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Mean per-date rank IC per calendar year, its Newey–West t (h-1 lags) and the dates behind it."""
    per_date = per_date_statistics(joined)
    years = pd.DatetimeIndex(per_date.index).year
    rows = [
        {
            "year": int(year),
            "rank_ic_mean": float(group["rank_ic"].mean()),
            "rank_ic_t_nw": newey_west_tstat(group["rank_ic"].to_numpy(np.float64), horizon - 1),
            "n_dates": len(group),
        }
        for year, group in per_date.groupby(years)
    ]
    return pd.DataFrame(rows)


def rank_ic_by_tercile(joined: pd.DataFrame, data: PortfolioData) -> pd.DataFrame:
    """Mean per-date rank IC within each ADV tercile of the members (empty without liquidity).

    A tercile never holding :data:`MIN_TERCILE_NAMES` names on a date (a universe of fewer than
    about 15 members) has no rank IC: NaN over 0 dates, rather than an error for the whole report.
    """
    if data.liquidity is None:
        return pd.DataFrame(columns=["tercile", "rank_ic_mean", "rank_ic_t_nw", "n_dates"])
    tercile = liquidity_terciles(joined, data)
    rows = []
    for code, label in enumerate(TERCILES):
        subset = joined.loc[tercile == code]
        enough = len(subset) > 0 and int(subset.groupby(DATE).size().max()) >= MIN_TERCILE_NAMES
        per_date = (
            per_date_statistics(subset, min_tickers=MIN_TERCILE_NAMES) if enough else pd.DataFrame({"rank_ic": []})
        )
        ic = per_date["rank_ic"].to_numpy(np.float64)
        rows.append(
            {
                "tercile": label,
                "rank_ic_mean": float(ic.mean()) if ic.size else math.nan,
                "rank_ic_t_nw": newey_west_tstat(ic, data.horizon - 1),
                "n_dates": int(ic.size),
            }
        )
    return pd.DataFrame(rows)


def liquidity_terciles(frame: pd.DataFrame, data: PortfolioData) -> IntArray:
    """ADV tercile (0 liquid .. 2 illiquid) of each row's ticker on its date, cut on that date's members.

    Raises:
        TrainingError: no liquidity panels, or a row's date or ticker outside the close panel.
    """
    if data.liquidity is None:
        raise TrainingError("liquidity terciles need ADV: pass liquidity (prices with volume)")
    close = data.close
    rows = close.index.get_indexer(pd.DatetimeIndex(frame[DATE]))
    cols = close.columns.get_indexer(pd.Index(frame[TICKER].astype(str)))
    if (rows < 0).any() or (cols < 0).any():
        raise TrainingError("scores name a date or ticker outside the close panel")
    if data.members is None:
        pool = np.isfinite(close.to_numpy(np.float64, na_value=np.nan))
    else:
        pool = data.members.reindex(index=close.index, columns=close.columns, fill_value=False).to_numpy(bool)
    out = np.full(len(frame), 2, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    starts = np.flatnonzero(np.r_[True, rows[order][1:] != rows[order][:-1]])
    for chunk in np.split(order, starts[1:]):
        row = int(rows[chunk[0]])
        out[chunk] = adv_terciles(data.liquidity.adv[row], pool[row])[cols[chunk]]
    return out
