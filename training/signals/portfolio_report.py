"""The train stage's portfolio section: the test-segment books of every model and baseline.

Runs :func:`training.evaluation.suite.portfolio_report` on the run's test scores with the run
config's ``signals.evaluation`` (top_k, schedule, ``book``) and ``signals.costs`` (flat, or by
liquidity with ``costs.liquidity``), prints the table, and writes ``reports/portfolio-<stamp>.md``
with the definitions, ``.csv`` (the table), ``-by-year.csv`` and ``-by-tercile.csv`` (rank IC).
ADV needs the stored prices' volume, so they are read once more when costs by liquidity or the ADV
cap are configured.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from feature_repo.tables import DATE, TICKER
from training.context import RunContext
from training.evaluation.liquidity import liquidity_panels, traded_value_panel
from training.evaluation.report import PORTFOLIO_DEFINITIONS, format_table
from training.evaluation.suite import PortfolioData, PortfolioReport, PortfolioSettings, portfolio_report
from training.signals.inputs import SignalInputs, read_universe


def portfolio_data(inputs: SignalInputs, offline_store: Path) -> PortfolioData:
    """The close panel, outcomes and universe of the run, with ADV when the config needs it."""
    config = inputs.config
    h = config.horizon
    outcomes = inputs.outcomes[[DATE, TICKER, f"fwd_excess_{h}d"]].rename(columns={f"fwd_excess_{h}d": "target"})
    liquidity = None
    if config.costs.liquidity is not None or config.evaluation.book.adv_cap is not None:
        prices, _ = read_universe(config, offline_store)
        sessions = config.costs.liquidity.adv_sessions if config.costs.liquidity is not None else 60
        liquidity = liquidity_panels(inputs.close, traded_value_panel(prices), sessions=sessions)
    return PortfolioData(inputs.close, outcomes, h, inputs.test_window, inputs.members, liquidity)


def report_portfolios(
    ctx: RunContext, scores: dict[str, pd.DataFrame], inputs: SignalInputs, data: str
) -> PortfolioReport:
    """Build, print and write the portfolio section for the models' test ``scores`` (name -> long scores)."""
    portfolio = portfolio_data(inputs, ctx.offline_store_path)
    settings = PortfolioSettings.from_config(inputs.config.evaluation, inputs.config.costs, portfolio.window)
    first, last = portfolio.window
    window = {name: s[s[DATE].between(first, last)][[DATE, TICKER, "score"]] for name, s in scores.items()}
    report = portfolio_report(window, portfolio, settings)
    text = format_table(report.table)
    print(f"\n  Portfolios on the test segment ({data}):\n", file=ctx.out)
    print("\n".join("  " + line for line in text.splitlines()), file=ctx.out)
    folder = ctx.data_dir / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    by_year = report.rank_ic_by_year.to_string(index=False)
    by_tercile = report.rank_ic_by_tercile.to_string(index=False)
    (folder / f"portfolio-{stamp}.md").write_text(
        f"# Portfolios, test segment\n\n{data}\n\n```\n{text}\n```\n\n```\n{PORTFOLIO_DEFINITIONS}```\n\n"
        f"## Rank IC by year\n\n```\n{by_year}\n```\n\n## Rank IC by ADV tercile of the members\n\n"
        f"```\n{by_tercile}\n```\n",
        encoding="utf-8",
    )
    report.table.to_csv(folder / f"portfolio-{stamp}.csv")
    report.rank_ic_by_year.to_csv(folder / f"portfolio-{stamp}-by-year.csv", index=False)
    report.rank_ic_by_tercile.to_csv(folder / f"portfolio-{stamp}-by-tercile.csv", index=False)
    print(f"  portfolio definitions and tables: {folder / f'portfolio-{stamp}.md'}", file=ctx.out, flush=True)
    return report
