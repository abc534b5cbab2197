"""Turn a configured data source into frames for the offline store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import pandas as pd

from feature_repo import tables as t
from training.config import DataSource, EodFilesSource, EodhdSource, FilesSource, SkfolioSource, SyntheticSource
from training.errors import InputProblem

# Bars named in a note about bars kept outside their own range; the count covers all of them.
BRACKET_ROWS_SHOWN = 5


@dataclass(frozen=True)
class LoadedData:
    """Every table a source produced; tables it has no data for are simply absent.

    ``problems`` lists the records that were skipped as malformed (from document
    files); everything else that is wrong with an input raises instead. ``notes``
    are lines for the person running the ingest: what was counted, tolerated or
    skipped on purpose (empty day files, halted bars, an index open outside its range).
    """

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    description: str = ""
    problems: tuple[InputProblem, ...] = ()
    notes: tuple[str, ...] = ()


def load_source(source: DataSource) -> LoadedData:
    """Load everything ``source`` provides, in the store's column contracts."""
    if isinstance(source, SyntheticSource):
        return _synthetic(source)
    if isinstance(source, SkfolioSource):
        loaded = _skfolio(source)
    elif isinstance(source, FilesSource):
        loaded = _files(source)
    elif isinstance(source, EodFilesSource):
        loaded = _eod_files(source)
    else:
        loaded = _eodhd(source)
    return _with_documents(loaded, source.documents)


def prices_to_benchmark(prices: pd.DataFrame) -> pd.DataFrame:
    """Benchmark rows from price rows of an index (its ticker becomes the symbol)."""
    return pd.DataFrame(
        {
            "symbol": prices[t.TICKER].to_numpy(),
            t.DATE: prices[t.DATE].to_numpy(),
            "close": prices["adj_close"].to_numpy(),
            t.SOURCE: prices[t.SOURCE].to_numpy(),
            t.SYNTHETIC: prices[t.SYNTHETIC].to_numpy(),
        }
    )


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _skfolio(source: SkfolioSource) -> LoadedData:
    from training.ingest.bundled import load_sp500

    data = load_sp500(_iso(source.start), _iso(source.end))
    return LoadedData(
        {"prices": data.prices, "benchmark": data.benchmark},
        "skfolio S&P 500 sample (real adjusted closes, bundled in the package)",
    )


def _files(source: FilesSource) -> LoadedData:
    from training.ingest.files import load_fundamentals, load_price_file

    loaded = [load_price_file(p, bracket=source.bracket_violations) for p in source.prices]
    tables = {"prices": pd.concat([f.frame for f in loaded], ignore_index=True)}
    notes = [
        _bracket_note(path, f.bracket_violations, f.bracket_warnings)
        for path, f in zip(source.prices, loaded, strict=True)
    ]
    if source.benchmark is not None:
        # A benchmark is read for its close; an index open is not a trade and may lie outside the range.
        benchmark = load_price_file(source.benchmark, bracket="warn")
        tables["benchmark"] = prices_to_benchmark(benchmark.frame)
        notes.append(_bracket_note(source.benchmark, benchmark.bracket_violations, benchmark.bracket_warnings))
    if source.fundamentals:
        tables["fundamentals"] = pd.concat([load_fundamentals(p) for p in source.fundamentals], ignore_index=True)
    return LoadedData(tables, f"{len(source.prices)} user price file(s)", notes=tuple(n for n in notes if n))


def _bracket_note(path: Path, count: int, warnings: Sequence[InputProblem]) -> str:
    """One line naming the first bars kept outside their own range, or "" when there are none."""
    if not count:
        return ""
    rows = sorted(warnings, key=lambda p: p.row or 0)[:BRACKET_ROWS_SHOWN]
    shown = "; ".join(f"row {p.row}: {p.message}" for p in rows)
    more = " ..." if count > len(rows) else ""
    return f"note: {path}: {count:,} bar value(s) outside the bar's own range, kept as delivered: {shown}{more}"


def _eod_files(source: EodFilesSource) -> LoadedData:
    from training.ingest.eod_files import load_eod_files

    loaded = load_eod_files(
        source.paths,
        code_pattern=source.code_pattern,
        index_codes=source.index_codes,
        bracket=source.bracket_violations,
        start=source.start,
        end=source.end,
    )
    tables = {"prices": loaded.prices, "benchmark": loaded.benchmark}
    report = loaded.report
    description = f"per-day vendor files ({len(source.paths)} path(s), {report.files_read:,} day files)"
    return LoadedData(tables, description, notes=tuple(report.lines()))


def _eodhd(source: EodhdSource) -> LoadedData:
    from training.ingest.documents import combine_documents
    from training.ingest.eodhd import EodhdClient

    start, end = source.start, source.end or date.today()
    with EodhdClient() as client:
        tables = {
            "prices": client.eod_prices_many(source.tickers, start, end),
            "benchmark": prices_to_benchmark(client.eod_prices(source.benchmark, start, end)),
        }
        if source.fundamentals:
            tables["fundamentals"] = pd.concat([client.fundamentals(s) for s in source.tickers], ignore_index=True)
        if source.news:
            # One article tagged with two configured tickers has one doc_id: keep its first copy.
            tables["documents"] = combine_documents([client.news(s, start, end) for s in source.tickers])
    return LoadedData(tables, f"EODHD API, {len(source.tickers)} ticker(s)")


def _with_documents(loaded: LoadedData, paths: Sequence[Path]) -> LoadedData:
    """Adds the user's document files to what a source loaded, one row per ``doc_id``.

    The files come first, in the order given, then the source's own documents (EODHD
    news): the first copy of a text wins, so a text the user brought keeps its
    ticker, time and source label whatever the feed says.
    """
    if not paths:
        return loaded
    from training.ingest.documents import combine_documents, load_documents

    batches = [load_documents(path) for path in paths]
    frames = [batch.frame for batch in batches]
    fetched = loaded.tables.get("documents")
    if fetched is not None:
        frames.append(fetched)
    return replace(
        loaded,
        tables=loaded.tables | {"documents": combine_documents(frames)},
        description=f"{loaded.description}; {len(paths)} document file(s)",
        problems=loaded.problems + tuple(p for batch in batches for p in batch.problems),
    )


def _synthetic(source: SyntheticSource) -> LoadedData:
    from training.ingest.synthetic import generate_universe, scored_documents

    universe = generate_universe(n_tickers=source.n_tickers, n_months=source.n_months, seed=source.seed)
    tables = {
        "prices": universe.prices,
        "benchmark": universe.benchmark,
        "fundamentals": universe.fundamentals,
        "documents": universe.documents,
        "scored_documents": scored_documents(universe.documents, seed=source.seed),
    }
    return LoadedData(tables, f"SYNTHETIC universe ({source.n_tickers} tickers, {source.n_months} months)")
