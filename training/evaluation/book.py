"""A turnover-aware top-k long-only book over a point-in-time universe, with costs by liquidity.

Timing, drift and the schedule are those of :mod:`training.evaluation.topk` (a signal at t's close
trades at the close of ``t + execution_lag``; weights drift between rebalances; a name past its
last bar is carried at its last close). What differs is who is held and what each trade costs.

**Eligible** on a rebalance: a member of the universe on the signal date (``members``; every name
when None) with a score dated then and a bar on the trade session. Fewer than k eligible names is
an error naming the date and the count. Ranks 1..n go to the eligible names by score (ties: the
column order of ``close``).

**Who is held** (Qlib's TopkDropout idea, with a hold band and a minimum holding period):

1. *Forced exits.* A held name that is no longer eligible (it left the universe, lost its score,
   or has no bar on the trade session: a delisted name exits at its last close) is sold.
2. *Rank exits.* A held name whose rank is beyond ``k + buffer`` and that has been held at least
   ``min_hold`` rebalance periods may be sold; the worst-ranked go first and at most
   ``max_replace`` are sold per rebalance (forced exits do not count).
3. *Buys.* The best-ranked eligible names not held fill the book back to k.

**Weights.** 1/k per held name, then the ADV cap: a position may not exceed
``adv_cap x ADV(signal date) / book_aud`` of the book; the excess goes equally to the uncapped
names (repeatedly, until none exceeds its cap) and what cannot be placed stays in cash.

**Costs** per traded name, on that close's equity: ``|w_target - w_drifted| x rate``, with the rate
of :class:`training.evaluation.liquidity.TradeCosts` (brokerage + half-spread by ADV tercile +
square-root impact on the AUD traded, ``book_aud x equity x |dw|``). Net return that day is
``(1 + gross) x (1 - cost) - 1``.

**Turnover.** ``sum |w_target - w_drifted|`` per rebalance (buys plus sells), as in
:mod:`~training.evaluation.topk`; the *one-way* turnover reported beside it is half of that, the
share of the book replaced (replacing every name is 1.0; replacing 15 of 30 names is 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.errors import TrainingError
from training.evaluation.liquidity import FloatArray, IntArray, Liquidity, TradeCosts, adv_terciles
from training.evaluation.topk import (
    BacktestResult,
    DateBound,
    _check_schedule,
    _prices,
    _schedule,
    _score_matrix,
    _scored_schedule,
    _window,
)

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class BookRules:
    """How the book trades (module docstring: the rules).

    Attributes:
        k: names held (>= 1).
        buffer: a held name is kept while its rank is within ``k + buffer``.
        max_replace: most rank exits per rebalance; None for no limit.
        min_hold: rebalance periods a bought name is held before a rank exit (0 and 1: none).
        adv_cap: largest position as a share of its ADV; None for no cap.
        book_aud: book size in AUD, the scale of the ADV cap and of market impact.
    """

    k: int
    buffer: int = 0
    max_replace: int | None = None
    min_hold: int = 0
    adv_cap: float | None = None
    book_aud: float = 10_000_000.0

    def __post_init__(self) -> None:
        if self.k < 1:
            raise TrainingError(f"k must be at least 1, got {self.k}")
        if self.buffer < 0 or self.min_hold < 0 or (self.max_replace is not None and self.max_replace < 0):
            raise TrainingError(
                f"buffer, max_replace and min_hold must be >= 0, got buffer={self.buffer}, "
                f"max_replace={self.max_replace}, min_hold={self.min_hold}"
            )
        if self.adv_cap is not None and self.adv_cap <= 0:
            raise TrainingError(f"adv_cap must be positive, got {self.adv_cap}")
        if self.book_aud <= 0:
            raise TrainingError(f"book_aud must be positive, got {self.book_aud}")


@dataclass(frozen=True)
class Schedule:
    """When the book trades: every ``rebalance_every`` sessions in ``[start, end]``, ``execution_lag`` later."""

    rebalance_every: int
    start: DateBound = None
    end: DateBound = None
    execution_lag: int = 1


def book_backtest(
    scores: pd.DataFrame,
    close: pd.DataFrame,
    *,
    rules: BookRules,
    costs: TradeCosts,
    schedule: Schedule,
    members: pd.DataFrame | None = None,
    liquidity: Liquidity | None = None,
) -> BacktestResult:
    """The turnover-aware top-k book of ``scores`` (module docstring: the exact rules).

    Args:
        scores: long ``date, ticker, score``; dates must be sessions of ``close``.
        close: wide adjusted closes (sessions x tickers), positive, NaN outside a ticker's life.
        rules: k, buffer, replacements, minimum hold, ADV cap, book size.
        costs: cost rates; by-liquidity rates and the ADV cap need ``liquidity``.
        schedule: rebalance spacing, window and execution lag.
        members: boolean sessions x tickers mask of the point-in-time universe; None = all names.
        liquidity: ADV and volatility on ``close``'s grid (:func:`liquidity_panels`).

    Raises:
        TrainingError: bad parameters, bad scores, liquidity needed but missing, or a rebalance
            date with fewer than k eligible names (the date and the count named).
    """
    _check_schedule(schedule.rebalance_every, costs.brokerage, schedule.execution_lag)
    _check_liquidity(rules, costs, liquidity, close)
    raw = _prices(close)
    score = _score_matrix(scores, close)
    signal_pos, trade_pos, hi = _scored_schedule(
        score, close, schedule.start, schedule.end, every=schedule.rebalance_every, lag=schedule.execution_lag
    )
    eligible = np.isfinite(score[signal_pos]) & np.isfinite(raw[trade_pos]) & _member_rows(members, close, signal_pos)
    _check_counts(eligible, rules.k, pd.DatetimeIndex(close.index[signal_pos]))
    held = select_holdings(score[signal_pos], eligible, rules)
    targets = _weights(held, rules, liquidity, signal_pos)
    plan = Plan(signal_pos, trade_pos, targets, eligible, hi)
    return simulate(close, raw, plan, costs=costs, book_aud=rules.book_aud, liquidity=liquidity)


def _member_rows(members: pd.DataFrame | None, close: pd.DataFrame, rows: IntArray) -> BoolArray:
    """The universe mask on the given session positions; all True without a universe."""
    if members is None:
        return np.ones((rows.size, close.shape[1]), dtype=bool)
    aligned = members.reindex(index=close.index[rows], columns=close.columns, fill_value=False)
    return aligned.to_numpy(bool)


def _check_counts(eligible: BoolArray, k: int, dates: pd.DatetimeIndex) -> None:
    counts = eligible.sum(axis=1)
    short = np.flatnonzero(counts < k)
    if short.size:
        j = int(short[0])
        raise TrainingError(
            f"rebalance date {dates[j].date()} has {int(counts[j])} eligible name(s) (universe members with a "
            f"score and a bar on the trade session), fewer than k={k}: lower k or loosen the universe rule"
        )


def _check_liquidity(rules: BookRules, costs: TradeCosts, liquidity: Liquidity | None, close: pd.DataFrame) -> None:
    needs = rules.adv_cap is not None or costs.needs_liquidity
    if needs and liquidity is None:
        raise TrainingError("the ADV cap and costs by liquidity need ADV: pass liquidity (prices with volume)")
    if liquidity is not None and liquidity.adv.shape != close.shape:
        raise TrainingError(f"liquidity panels have shape {liquidity.adv.shape}, close has {close.shape}")


def select_holdings(score: FloatArray, eligible: BoolArray, rules: BookRules) -> BoolArray:
    """Who is held after each rebalance (rows: rebalances; module docstring: the rules)."""
    n_reb, n_names = score.shape
    held = np.zeros(n_names, dtype=bool)
    age = np.zeros(n_names, dtype=np.int64)
    out = np.zeros((n_reb, n_names), dtype=bool)
    for j in range(n_reb):
        masked = np.where(eligible[j], score[j], -np.inf)
        order = np.argsort(-masked, kind="stable")
        rank = np.empty(n_names, dtype=np.int64)
        rank[order] = np.arange(1, n_names + 1)
        rank[~eligible[j]] = n_names + 1
        held &= eligible[j]  # forced exits
        age = np.where(held, age + 1, 0)
        droppable = np.flatnonzero(held & (rank > rules.k + rules.buffer) & (age >= rules.min_hold))
        droppable = droppable[np.argsort(-rank[droppable], kind="stable")]
        if rules.max_replace is not None:
            droppable = droppable[: rules.max_replace]
        held[droppable] = False
        age[droppable] = 0
        room = rules.k - int(held.sum())
        if room > 0:
            candidates = order[eligible[j][order] & ~held[order]][:room]
            held[candidates] = True
        out[j] = held
    return out


def _weights(held: BoolArray, rules: BookRules, liquidity: Liquidity | None, signal_pos: IntArray) -> FloatArray:
    """Equal weights on the held names, capped at a share of ADV (module docstring)."""
    targets = held / rules.k
    if rules.adv_cap is None or liquidity is None:
        return targets.astype(np.float64)
    limits = np.nan_to_num(rules.adv_cap * liquidity.adv[signal_pos] / rules.book_aud, nan=0.0)
    return np.vstack([cap_weights(row, lim) for row, lim in zip(targets, limits, strict=True)])


def cap_weights(weights: FloatArray, limits: FloatArray) -> FloatArray:
    """Clip weights at their limits and hand the excess equally to the names below theirs.

    Repeats until no weight exceeds its limit or no name has room; what is left is cash.
    """
    w = np.minimum(weights, limits).astype(np.float64)
    active = weights > 0
    excess = float(weights.sum() - w.sum())
    for _ in range(int(active.sum())):
        room = active & (w < limits - 1e-15)
        if excess <= 1e-15 or not room.any():
            break
        share = excess / int(room.sum())
        new = np.where(room, np.minimum(w + share, limits), w)
        excess -= float(new.sum() - w.sum())
        w = new
    return w


@dataclass(frozen=True, eq=False)
class Plan:
    """The rebalances of a book: signal and trade positions, targets, eligible names, last session."""

    signal_pos: IntArray
    trade_pos: IntArray
    targets: FloatArray
    eligible: BoolArray
    last: int


def simulate(
    close: pd.DataFrame,
    raw: FloatArray,
    plan: Plan,
    *,
    costs: TradeCosts,
    book_aud: float,
    liquidity: Liquidity | None,
) -> BacktestResult:
    """Run the book from the first trade session to ``last``: drift, trade, charge each name's cost."""
    signal_pos, trade_pos, targets, last = plan.signal_pos, plan.trade_pos, plan.targets, plan.last
    first = int(trade_pos[0])
    # Carry a position at its last close after delisting; only the simulated sessions are filled
    # (a name whose last bar came before them is not held, so nothing earlier is needed).
    filled = pd.DataFrame(raw[first - 1 : last + 1]).ffill().to_numpy(np.float64)
    growth = np.nan_to_num(filled[1:] / filled[:-1] - 1.0, nan=0.0)
    trade_of_day = np.full(last - first + 1, -1, dtype=np.int64)
    trade_of_day[trade_pos - first] = np.arange(trade_pos.size)
    gross, net = np.zeros(last - first + 1), np.zeros(last - first + 1)
    turnover, charged = np.zeros(trade_pos.size), np.zeros(trade_pos.size)
    weights, equity = np.zeros(raw.shape[1]), 1.0
    for day, j in enumerate(trade_of_day):
        day_return = float(weights @ growth[day])
        weights = weights * (1.0 + growth[day]) / (1.0 + day_return)
        cost = 0.0
        if j >= 0:
            traded = np.abs(targets[j] - weights)
            rates = _rates(
                costs,
                traded * book_aud * max(equity * (1.0 + day_return), 0.0),
                liquidity,
                signal_pos[j],
                plan.eligible[j],
            )
            cost = min(float(traded @ rates), 1.0)  # at worst the book is wiped out
            turnover[j], charged[j] = float(traded.sum()), cost
            weights = targets[j].copy()
        gross[day] = day_return
        net[day] = (1.0 + day_return) * (1.0 - cost) - 1.0
        equity *= 1.0 + net[day]
    sessions, trade_days = close.index[first : last + 1], close.index[trade_pos]
    held = np.flatnonzero(targets.any(axis=0))
    return BacktestResult(
        returns=pd.Series(net, index=sessions, name="net_return"),
        gross_returns=pd.Series(gross, index=sessions, name="gross_return"),
        turnover=pd.Series(turnover, index=trade_days, name="turnover"),
        weights=pd.DataFrame(targets[:, held], index=trade_days, columns=close.columns[held]),
        signal_dates=pd.Series(close.index[signal_pos], index=trade_days, name="signal_date"),
        cost_per_side=costs.brokerage,
        costs=pd.Series(charged, index=trade_days, name="cost"),
    )


def _rates(
    costs: TradeCosts, traded_aud: FloatArray, liquidity: Liquidity | None, row: int, eligible: BoolArray
) -> FloatArray:
    """Each name's cost rate on one trade; flat when no liquidity is given."""
    if liquidity is None:
        return np.full(traded_aud.shape, costs.brokerage + costs.half_spread[0])
    adv, sigma = liquidity.adv[row], liquidity.sigma[row]
    return costs.rates(traded_aud, adv, sigma, adv_terciles(adv, eligible))


def equal_weight_book(
    close: pd.DataFrame,
    *,
    costs: TradeCosts,
    schedule: Schedule,
    members: pd.DataFrame | None = None,
    liquidity: Liquidity | None = None,
    adv_cap: float | None = None,
    book_aud: float = 10_000_000.0,
) -> BacktestResult:
    """Equal weight on every eligible name (a member with a bar on the signal and trade sessions).

    The no-skill book, under the same universe, schedule, ADV cap and costs as :func:`book_backtest`.

    Raises:
        TrainingError: bad parameters, liquidity needed but missing, or a date with no eligible name.
    """
    rules = BookRules(k=1, adv_cap=adv_cap, book_aud=book_aud)
    _check_schedule(schedule.rebalance_every, costs.brokerage, schedule.execution_lag)
    _check_liquidity(rules, costs, liquidity, close)
    raw = _prices(close)
    lo, hi = _window(pd.DatetimeIndex(close.index), schedule.start, schedule.end)
    signal_pos, trade_pos = _schedule(lo, hi, schedule.rebalance_every, schedule.execution_lag)
    eligible = np.isfinite(raw[signal_pos]) & np.isfinite(raw[trade_pos]) & _member_rows(members, close, signal_pos)
    _check_counts(eligible, 1, pd.DatetimeIndex(close.index[signal_pos]))
    targets = (eligible / eligible.sum(axis=1, keepdims=True)).astype(np.float64)
    if adv_cap is not None and liquidity is not None:
        limits = np.nan_to_num(adv_cap * liquidity.adv[signal_pos] / book_aud, nan=0.0)
        targets = np.vstack([cap_weights(row, lim) for row, lim in zip(targets, limits, strict=True)])
    plan = Plan(signal_pos, trade_pos, targets, eligible, hi)
    return simulate(close, raw, plan, costs=costs, book_aud=book_aud, liquidity=liquidity)


def long_short_book(
    scores: pd.DataFrame,
    close: pd.DataFrame,
    *,
    quantile: float,
    costs: TradeCosts,
    schedule: Schedule,
    members: pd.DataFrame | None = None,
    liquidity: Liquidity | None = None,
    book_aud: float = 10_000_000.0,
) -> BacktestResult:
    """Long the top ``quantile`` of eligible names, short the bottom one, each leg 1.0, re-formed each rebalance.

    Costs are charged on both legs at the same rates; borrow fees and short rebates are not
    modelled, so the net figures flatter the short leg. Daily return: ``sum w_i r_i`` with the legs
    drifting, cash earning 0.

    Raises:
        TrainingError: ``quantile`` outside (0, 0.5], or as :func:`book_backtest` (fewer than two
            eligible names per leg on a date is named).
    """
    if not 0.0 < quantile <= 0.5:
        raise TrainingError(f"quantile must be in (0, 0.5], got {quantile}")
    _check_schedule(schedule.rebalance_every, costs.brokerage, schedule.execution_lag)
    _check_liquidity(BookRules(k=1, book_aud=book_aud), costs, liquidity, close)
    raw = _prices(close)
    score = _score_matrix(scores, close)
    signal_pos, trade_pos, hi = _scored_schedule(
        score, close, schedule.start, schedule.end, every=schedule.rebalance_every, lag=schedule.execution_lag
    )
    eligible = np.isfinite(score[signal_pos]) & np.isfinite(raw[trade_pos]) & _member_rows(members, close, signal_pos)
    _check_counts(eligible, 2, pd.DatetimeIndex(close.index[signal_pos]))
    targets = np.zeros(eligible.shape)
    for j in range(eligible.shape[0]):
        names = np.flatnonzero(eligible[j])
        ranked = names[np.argsort(-score[signal_pos[j], names], kind="stable")]
        leg = max(int(quantile * ranked.size), 1)
        targets[j, ranked[:leg]] = 1.0 / leg
        targets[j, ranked[-leg:]] = -1.0 / leg
    plan = Plan(signal_pos, trade_pos, targets, eligible, hi)
    return simulate(close, raw, plan, costs=costs, book_aud=book_aud, liquidity=liquidity)
