"""Stage ``ingest``: load the configured source into the offline store."""

from __future__ import annotations

from tqdm.auto import tqdm

from training.context import RunContext
from training.ingest.sources import load_source
from training.store import OfflineStore

# Write order matters only for readability of the log; every table is its own transaction.
WRITE_ORDER = ("prices", "benchmark", "fundamentals", "documents", "scored_documents")


def run(ctx: RunContext) -> dict[str, object]:
    """Load, then upsert table by table; return rows inserted/updated per table."""
    loaded = load_source(ctx.config.data)
    print(f"  source: {loaded.description}", file=ctx.out)
    summary: dict[str, object] = {}
    with OfflineStore(ctx.offline_store_path) as store:
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
    return summary
