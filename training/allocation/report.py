"""What the ``allocate`` stage prints and writes: the panel, the search, the comparison, the tear sheet.

Reports go to ``<data>/reports/allocation-<stamp>.{html,md,csv}``: the HTML tear sheet, the
comparison table with its definitions, and the table as CSV.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import pandas as pd

from training.allocation.comparison import Comparison
from training.allocation.data import AllocationData
from training.allocation.performance import DEFINITIONS, format_table
from training.allocation.rl import RLResult
from training.allocation.tearsheet import write_tearsheet


def print_panel(out: TextIO, data: AllocationData, label: str) -> None:
    """The panel's size and span, and any ticker left out of it."""
    print(
        f"  panel: {data.panel.n_assets} tickers x {data.panel.n_sessions} sessions "
        f"({data.panel.dates[0]}..{data.panel.dates[-1]}); {label}",
        file=out,
    )
    if data.dropped:
        shown = ", ".join(data.dropped[:10]) + (" ..." if len(data.dropped) > 10 else "")
        print(f"  left out {len(data.dropped)} ticker(s) without a close on every session: {shown}", file=out)


def print_search(out: TextIO, s: RLResult, name: str) -> None:
    """The RL search's figures: trials, speed, ASHA stops, the chosen trial's validation Sharpe."""
    print(
        f"  allocator: {len(s.trials)} trials in {s.seconds:.0f} s ({s.trials_per_minute:.1f}/min on {s.cpus} CPU), "
        f"{s.stopped_early} stopped early by ASHA; chosen {name} after {s.timesteps} steps, validation Sharpe "
        f"{s.val_sharpe_mean:+.2f} (windows: {', '.join(f'{v:+.2f}' for v in s.val_sharpes)})",
        file=out,
        flush=True,
    )


def write_sheet(reports: Path, comparison: Comparison, *, benchmark_name: str, label: str) -> Path:
    """The HTML tear sheet of the comparison, ``reports/allocation-<stamp>.html``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    c = comparison
    return write_tearsheet(
        reports / f"allocation-{stamp}.html",
        c.results,
        table=c.table,
        benchmark=c.benchmark,
        benchmark_name=benchmark_name,
        extra_tables=c.extra,
        regimes=c.regimes,
        fan=c.fan,
        fan_strategy=c.policy_name,
        weights_strategy=c.policy_name,
        title="Portfolio OS: allocator and baselines on the test segment",
        notes=[
            label,
            "The test segment was untouched by tuning: RL trained on the train segment and was chosen on "
            "walk-forward windows of the valid segment.",
            "Every strategy trades at the close after the data it decides on, and pays the same costs.",
            *c.notes,
        ],
    )


def print_report(out: TextIO, comparison: Comparison, *, label: str, sheet: Path) -> None:
    """Print every table and note; write the table (with definitions) beside the tear sheet as .md and .csv."""
    table = comparison.table
    print(f"\n  Test segment, untouched by tuning; {label}:\n", file=out)
    print("\n".join("  " + line for line in format_table(table).splitlines()), file=out)
    for name, frame in comparison.extra.items():
        print(f"\n  {name}:", file=out)
        print("\n".join("  " + line for line in _plain(frame).splitlines()), file=out)
    for note in comparison.notes:
        print(f"  note: {note}", file=out)
    slow = ", ".join(f"{k} {v:.1f}s" for k, v in comparison.seconds.items())
    print(f"\n  backtest wall time: {slow}", file=out)
    reports = sheet.parent
    (reports / sheet.name.replace(".html", ".md")).write_text(
        f"# Allocation, test segment\n\n{label}\n\n```\n{format_table(table)}\n```\n\n```\n{DEFINITIONS}\n```\n",
        encoding="utf-8",
    )
    table.to_csv(reports / sheet.name.replace(".html", ".csv"))
    print(f"  tear sheet: {sheet}", file=out, flush=True)


def _plain(frame: pd.DataFrame) -> str:
    """A small table as text: counts as integers, other numbers to 4 decimals, no row index."""
    shown = frame.copy()
    for column in shown.columns:
        if column in ("days", "n_days"):
            shown[column] = shown[column].astype("Int64")
    keep_index = not isinstance(shown.index, pd.RangeIndex)
    return shown.to_string(index=keep_index, float_format=lambda v: f"{v:.4f}", na_rep="-")
