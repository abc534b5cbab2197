"""The train stage's portfolio section: the test-segment books of every model and baseline.

Runs :func:`training.evaluation.suite.portfolio_report` on the run's test scores with the run
config's ``signals.evaluation`` (top_k, schedule, ``book``) and ``signals.costs`` (flat, or by
liquidity with ``costs.liquidity``), prints the table, and writes ``reports/portfolio-<stamp>.md``
with the definitions, ``.csv`` (the table), ``-by-year.csv`` and ``-by-tercile.csv`` (rank IC).
ADV comes with the run's inputs (:func:`training.signals.inputs.run_liquidity`), from the prices'
volume, when costs by liquidity or the ADV cap are configured; the same costs price the signal
report's plain top-k table, and both reports name them above their tables.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from feature_repo.tables import DATE, TICKER
from training.context import RunContext
from training.evaluation.liquidity import describe_costs
from training.evaluation.report import PORTFOLIO_DEFINITIONS, format_table
from training.evaluation.suite import PortfolioData, PortfolioReport, PortfolioSettings, portfolio_report
from training.signals.inputs import SignalInputs


def portfolio_data(inputs: SignalInputs) -> PortfolioData:
    """The close panel, outcomes, universe and (when the config needs it) ADV of the run."""
    h = inputs.config.horizon
    outcomes = inputs.outcomes[[DATE, TICKER, f"fwd_excess_{h}d"]].rename(columns={f"fwd_excess_{h}d": "target"})
    return PortfolioData(inputs.close, outcomes, h, inputs.test_window, inputs.members, inputs.liquidity)


def report_portfolios(
    ctx: RunContext, scores: dict[str, pd.DataFrame], inputs: SignalInputs, data: str
) -> PortfolioReport:
    """Build, print and write the portfolio section for the models' test ``scores`` (name -> long scores)."""
    portfolio = portfolio_data(inputs)
    config = inputs.config
    settings = PortfolioSettings.from_config(config.evaluation, config.costs, portfolio.window)
    first, last = portfolio.window
    window = {name: s[s[DATE].between(first, last)][[DATE, TICKER, "score"]] for name, s in scores.items()}
    report = portfolio_report(window, portfolio, settings)
    text = format_table(report.table)
    costs = f"Costs {describe_costs(config.costs, config.evaluation.book.book_aud)}."
    print(f"\n  Portfolios on the test segment ({data}):\n  {costs}\n", file=ctx.out)
    print("\n".join("  " + line for line in text.splitlines()), file=ctx.out)
    folder = ctx.data_dir / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    by_year = report.rank_ic_by_year.to_string(index=False)
    by_tercile = report.rank_ic_by_tercile.to_string(index=False)
    (folder / f"portfolio-{stamp}.md").write_text(
        f"# Portfolios, test segment\n\n{data}\n\n{costs}\n\n```\n{text}\n```\n\n```\n{PORTFOLIO_DEFINITIONS}```\n\n"
        f"## Rank IC by year\n\n```\n{by_year}\n```\n\n## Rank IC by ADV tercile of the members\n\n"
        f"```\n{by_tercile}\n```\n",
        encoding="utf-8",
    )
    report.table.to_csv(folder / f"portfolio-{stamp}.csv")
    report.rank_ic_by_year.to_csv(folder / f"portfolio-{stamp}-by-year.csv", index=False)
    report.rank_ic_by_tercile.to_csv(folder / f"portfolio-{stamp}-by-tercile.csv", index=False)
    print(f"  portfolio definitions and tables: {folder / f'portfolio-{stamp}.md'}", file=ctx.out, flush=True)
    return report
