"""One comparison table of signal models and baselines: signal quality beside top-k backtest results."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Final

import pandas as pd

from training.evaluation.metrics import SignalMetrics
from training.evaluation.topk import BacktestResult

SIGNAL_COLUMNS: Final = (
    "auc",
    "ic_mean",
    "ic_t_nw",
    "rank_ic_mean",
    "rank_ic_t_nw",
    "ic_ir_ann",
    "quintile_spread",
)
BACKTEST_COLUMNS: Final = ("ann_return", "ann_vol", "sharpe", "max_drawdown", "avg_turnover", "cost_ann")
COLUMNS: Final = SIGNAL_COLUMNS + BACKTEST_COLUMNS

DEFINITIONS: Final = """\
auc             pooled ROC AUC of score vs label (target > 0); 0.5 = no skill.
ic_mean         mean over dates of the per-date (cross-sectional) Pearson correlation of score and
                h-session forward excess return; dates with >= 5 tickers.
ic_t_nw         t-stat of ic_mean with a Newey-West standard error, h-1 lags, Bartlett weights:
                overlapping h-session targets make a naive t-stat too large.
rank_ic_mean    as ic_mean with the Spearman (rank) correlation; rank_ic_t_nw likewise.
ic_ir_ann       ic_mean / std(IC) * sqrt(252 / h): information ratio of the IC, annualised.
quintile_spread mean per-date difference of the mean target of the top and bottom score quintiles
                (an h-session excess return).
ann_return      plain top-k book: equal weight 1/k on the k best-scored members of the universe,
                re-formed at each rebalance (no hold band, replacement limit, minimum hold or ADV
                cap: the portfolio section's book has them), net of the costs named above the
                table, compound: prod(1 + r) ** (252 / n) - 1.
ann_vol         std of daily net returns * sqrt(252).
sharpe          mean daily net return * 252 / ann_vol; risk-free rate 0.
max_drawdown    worst fall of compounded net equity from its running peak (negative).
avg_turnover    mean turnover per rebalance, sum |w_target - w_drifted| (a full switch is 2.0,
                the first buy from cash 1.0; half of it is the portfolio section's one-way turnover).
cost_ann        costs paid per year, a fraction of equity, under the costs named above the table
                (the same model and book size as the portfolio section's).
Timing          a signal at t's close is traded at the close of t + execution_lag (>= 1) and
                earns from the next session; weights drift between rebalances.
"""

PORTFOLIO_DEFINITIONS: Final = """\
Every row runs the same construction on the same point-in-time universe, schedule and costs.
sharpe          turnover-aware long-only top-k book (hold band k + buffer, at most max_replace
                rank exits per rebalance, min_hold, ADV cap at book_aud), net of costs;
                gross_sharpe before costs. Risk-free rate 0.
ann_return      compound annual net return; gross_ann_return before costs.
one_way_turnover mean per rebalance of sum |w_target - w_drifted| / 2: the share of the book
                replaced (the first buy from cash counts 0.5).
cost_ann        costs paid per year, a fraction of equity, under the costs named above the table
                (by liquidity: brokerage + half-spread by ADV tercile of the members + square-root
                impact Y * sigma_daily * sqrt(AUD traded / ADV); or flat bps per side).
net_excess      252 * mean(daily net return - equal weight's daily gross return); gross_excess
                likewise before costs. Equal weight: the same members, same schedule.
capacity_aud    book size (AUD) where net_excess falls to half the gross_excess of a tiny book
                (no ADV cap in the search; interpolated in log size on a grid 1e5..1e10 AUD;
                0.1m means at or below the grid's first size, '-' no gross edge to eat).
ls_sharpe       long top / short bottom decile of the eligible names, each leg 1.0, net (costs
                on both legs, no borrow fee); ls_gross_sharpe before costs.
decile_spread   mean per-date target of the top score decile minus the bottom decile.
rank_ic_mean    mean per-date Spearman correlation of score and target (members only).
"""

# How each column is shown: percentages for returns, fixed decimals elsewhere.
_PERCENT: Final = frozenset(
    {
        "quintile_spread",
        "decile_spread",
        "ann_return",
        "gross_ann_return",
        "ann_vol",
        "max_drawdown",
        "cost_ann",
        "net_excess",
        "gross_excess",
    }
)
_DECIMALS: Final = {"auc": 3, "ic_mean": 4, "rank_ic_mean": 4}


def evaluation_table(rows: Mapping[str, tuple[SignalMetrics | None, BacktestResult]]) -> pd.DataFrame:
    """One row per model or baseline, in the mapping's order, with the columns of :data:`COLUMNS`.

    Args:
        rows: name -> (signal metrics, or None for a baseline without a score such as equal
            weight; top-k backtest result).

    Returns:
        Float frame indexed by name; signal columns are NaN where the metrics are None.
    """
    records = []
    for signal, backtest in rows.values():
        record = dict.fromkeys(SIGNAL_COLUMNS, math.nan)
        if signal is not None:
            values = signal.to_dict()
            record = {column: float(values[column]) for column in SIGNAL_COLUMNS}
        summary = backtest.metrics()
        record.update({column: float(summary[column]) for column in BACKTEST_COLUMNS})
        records.append(record)
    table = pd.DataFrame(records, index=pd.Index(list(rows), name="model"), columns=list(COLUMNS))
    return table.astype("float64")


def format_table(table: pd.DataFrame) -> str:
    """A fixed-width text rendering of :func:`evaluation_table` (or the portfolio table) for a terminal.

    Returns, volatility, drawdown, costs and spreads are shown as percentages; AUD amounts in
    millions; AUC with three decimals, ICs with four, everything else with two; NaN as ``-``.
    """
    headers = [str(column) for column in table.columns]
    formatters = [_formatter(header) for header in headers]
    body = [
        [str(name), *(render(value) for render, value in zip(formatters, row, strict=True))]
        for name, row in zip(table.index, table.itertuples(index=False), strict=True)
    ]
    grid = [[str(table.index.name or "model"), *headers], *body]
    widths = [max(len(line[i]) for line in grid) for i in range(len(grid[0]))]
    rule = ["-" * width for width in widths]
    lines = [_join(line, widths) for line in (grid[0], rule, *body)]
    return "\n".join(lines)


def _join(cells: list[str], widths: list[int]) -> str:
    """One table line: the name left-aligned, numbers right-aligned."""
    first, *rest = cells
    return "  ".join([first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))])


def _formatter(column: str) -> Callable[[object], str]:
    """The cell formatter of one column."""
    decimals = _DECIMALS.get(column, 2)

    def render(value: object) -> str:
        number = float(value) if isinstance(value, int | float) else math.nan
        if math.isnan(number):
            return "-"
        if column in _PERCENT:
            return f"{number * 100:.2f}%"
        if column.endswith("_aud"):
            return f"{number / 1e6:,.1f}m"
        return f"{number:.{decimals}f}"

    return render
