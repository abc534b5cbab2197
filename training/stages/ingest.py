"""Stage ``ingest``: load the configured source into the offline store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from tqdm.auto import tqdm

from training.context import RunContext
from training.corporate_actions.step import prepare as prepare_corporate_actions
from training.errors import InputProblem
from training.ingest.documents import skipped_records
from training.ingest.sources import load_source
from training.instruments import refresh_code_lives
from training.store import OfflineStore

# Write order matters only for readability of the log; every table is its own transaction.
WRITE_ORDER = ("prices", "benchmark", "fundamentals", "documents", "scored_documents")
# Skipped records listed in the log; the rest are only counted.
SHOWN_PROBLEMS = 10


def run(ctx: RunContext) -> dict[str, object]:
    """Load, then upsert table by table; return rows inserted/updated per table (and records skipped)."""
    loaded = load_source(ctx.config.data)
    print(f"  source: {loaded.description}", file=ctx.out)
    for note in loaded.notes:
        print(f"  {note}", file=ctx.out)
    summary: dict[str, object] = {}
    if loaded.problems:
        summary["skipped_records"] = _report_skipped(loaded.problems, ctx.out)
    with OfflineStore(ctx.offline_store_path) as store:
        # Before any write: adj_close is stored adjusted, and policy 'fail' stops with nothing written.
        loaded, corporate_actions = prepare_corporate_actions(loaded, ctx, store)
        for name in WRITE_ORDER:
            frame = loaded.tables.get(name)
            if frame is None or frame.empty:
                continue
            with tqdm(
                total=len(frame),
                desc=f"  {name}",
                unit="row",
                disable=ctx.progress_disabled,
                file=ctx.out,
                leave=False,
            ) as bar:
                result = store.upsert(name, frame, on_chunk=lambda done, _total: bar.update(done - bar.n))
            print(
                f"  {name:<17} {result.rows:>9,} rows: {result.inserted:,} new, {result.updated:,} changed, "
                f"{result.unchanged:,} unchanged",
                file=ctx.out,
            )
            summary[name] = f"+{result.inserted}/~{result.updated}"
        if corporate_actions is not None:
            summary |= corporate_actions.write(store, ctx)
        if store.count("prices"):
            # Derived from every stored bar, not this batch: a reuse can span an incremental load.
            lives, line = refresh_code_lives(
                store, exchange=ctx.config.calendar.exchange, gap_sessions=ctx.config.health.reuse_gap_sessions
            )
            print(f"  {line}", file=ctx.out)
            summary["reused_codes"] = len(lives.breaks)
    return summary


def _report_skipped(problems: Sequence[InputProblem], out: TextIO) -> int:
    """Prints how many malformed records were skipped and the first problems; returns the count."""
    skipped = skipped_records(problems)
    print(f"  skipped {skipped:,} malformed record(s) ({len(problems):,} problem(s)):", file=out)
    for problem in problems[:SHOWN_PROBLEMS]:
        print(f"    {problem}", file=out)
    if len(problems) > SHOWN_PROBLEMS:
        print(f"    ... and {len(problems) - SHOWN_PROBLEMS:,} more", file=out)
    return skipped
