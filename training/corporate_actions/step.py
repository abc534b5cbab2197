"""The ingest stage's corporate-actions step: between loading the raw rows and writing them."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from training.context import RunContext
from training.corporate_actions.policy import (
    BREAK_REASON,
    REPORT_NAME,
    CorporateActionsOutcome,
    process_prices,
    write_report,
)
from training.ingest.sources import LoadedData
from training.store import OfflineStore

__all__ = ["CorporateActionsStep", "prepare"]

# The derived rows of a run are replaced for the tickers it loaded only: a source that loads part of
# the universe must not wipe the factors and breaks of the rest.
_FOR_TICKERS = "list_contains(?, ticker)"
# Sources whose closes come adjusted (skfolio's sample, EODHD's adjusted_close): nothing to apply or detect
# there; the health check still flags any jump they left in.
ADJUSTED_SOURCES = ("skfolio", "eodhd")


@dataclass(frozen=True)
class CorporateActionsStep:
    """What :func:`prepare` derived, to be written after the prices."""

    outcome: CorporateActionsOutcome
    tickers: list[str]

    def write(self, store: OfflineStore, ctx: RunContext) -> dict[str, object]:
        """Replace this run's adjustment factors and suspect breaks; print and return the counts."""
        summary: dict[str, object] = {}
        suspects_where = f"reason = ? AND {_FOR_TICKERS}"
        writes: list[tuple[str, str, pd.DataFrame, str, list[object]]] = [
            ("adjustment_factors", "adjustment_factors", self.outcome.factors, _FOR_TICKERS, [self.tickers]),
            ("suspect breaks", "series_breaks", self.outcome.breaks, suspects_where, [BREAK_REASON, self.tickers]),
        ]
        for label, table, frame, where, params in writes:
            # Replace's counts compare the new rows with the old: the rows no longer derived are counted here.
            before = len(store.read(table, where, params, columns=["ticker"]))
            result = store.replace(table, frame, where, params)
            removed = before - result.updated - result.unchanged
            print(
                f"  {label:<17} {result.rows:>9,} rows: {result.inserted:,} new, {result.updated:,} changed, "
                f"{result.unchanged:,} unchanged, {removed:,} removed",
                file=ctx.out,
            )
            summary[label.replace(" ", "_")] = f"+{result.inserted}/~{result.updated}"
        summary["corporate_action_suspects"] = len(self.outcome.suspects)
        return summary


def prepare(loaded: LoadedData, ctx: RunContext, store: OfflineStore) -> tuple[LoadedData, CorporateActionsStep | None]:
    """Adjust the loaded prices, write the suspects report, and stop the run under policy ``fail``.

    Raises:
        IngestError: the actions file is malformed (nothing is written).
        HealthCheckFailed: policy ``fail`` and unconfirmed suspects (the report is written first).
    """
    prices = loaded.tables.get("prices")
    if prices is None or prices.empty:
        return loaded, None
    if ctx.config.data.kind in ADJUSTED_SOURCES:
        print(f"  corporate actions: none applied, the {ctx.config.data.kind} source adjusts its closes", file=ctx.out)
        return loaded, None
    raw = raw_rows(prices)
    if not raw.all():
        held = prices.loc[~raw, "ticker"].nunique()
        print(f"  corporate actions: {held:,} ticker(s) with their own adj_close kept as given", file=ctx.out)
    known = _known_breaks(prices, ctx, store)
    everything = bool(raw.all())
    outcome = process_prices(prices if everything else prices[raw], ctx.config.corporate_actions, known)
    report = ctx.data_dir / "reports" / REPORT_NAME
    write_report(outcome.suspects, report)
    print(f"  corporate actions: {outcome.summary()}; report {report}", file=ctx.out)
    outcome.raise_if_refused(report)
    if everything:
        adjusted = outcome.prices
    else:
        adjusted = prices.copy()
        adjusted.loc[raw, "adj_close"] = outcome.prices["adj_close"].to_numpy()
    tickers = sorted(map(str, prices["ticker"].unique()))
    return replace(loaded, tables=loaded.tables | {"prices": adjusted}), CorporateActionsStep(outcome, tickers)


def raw_rows(prices: pd.DataFrame) -> pd.Series:
    """Rows of tickers whose ``adj_close`` is their raw ``close`` on every row (the source adjusted nothing).

    A price file with its own adjusted close column keeps it: applying factors on top would adjust twice.
    """
    same = prices["adj_close"].eq(prices["close"]) | (prices["adj_close"].isna() & prices["close"].isna())
    return same.groupby(prices["ticker"]).transform("all").astype(bool)


def _known_breaks(prices: pd.DataFrame, ctx: RunContext, store: OfflineStore) -> pd.DataFrame:
    """Breaks with other reasons: a jump across a reused code is a new company, not a corporate action.

    The stored ones, plus the reused codes of this batch (derived the way the ingest stage derives them
    after writing the prices), so a first run and its re-run see the same breaks.
    """
    from training.calendar import run_sessions
    from training.instruments import code_lives

    keys = prices[["ticker", "date"]]
    sessions = run_sessions(ctx.config.calendar.exchange, keys["date"])
    fresh = code_lives(keys, gap_sessions=ctx.config.health.reuse_gap_sessions, sessions=sessions).breaks
    stored = store.read("series_breaks", "reason <> ?", [BREAK_REASON])
    return pd.concat([frame for frame in (stored, fresh) if not frame.empty] or [stored], ignore_index=True)
