"""Stage ``features``: compute every feature family and write the Feast source files."""

from __future__ import annotations

import pandas as pd
from tqdm.auto import tqdm

from feature_repo.files import write_feature_chunks, write_feature_file, write_market_file
from feature_repo.market import REGIME_VIEW, RETURN_WINDOW_VIEW, regime_view_frame, return_window_frame
from feature_repo.schema import FEATURES_BY_VIEW
from feature_repo.tables import DATE, TICKER
from feature_repo.transforms.alpha import alpha_feature_chunks
from feature_repo.transforms.fundamental import fundamental_features
from feature_repo.transforms.regime import RegimeInputError
from feature_repo.transforms.sentiment import sentiment_features
from feature_repo.transforms.technical import technical_features
from training.calendar import on_sessions, run_sessions
from training.context import RunContext
from training.corporate_actions.factors import with_adjusted_volume
from training.errors import TrainingError
from training.sentiment.documents import active_scores
from training.store import OfflineStore


def empty_features(view: str) -> pd.DataFrame:
    """A zero-row frame with a view's columns: the view exists but its source had no data."""
    columns = {TICKER: pd.Series(dtype="object"), DATE: pd.Series(dtype="datetime64[ns]")}
    columns |= {s.name: pd.Series(dtype=s.dtype) for s in FEATURES_BY_VIEW[view]}
    return pd.DataFrame(columns)


def run(ctx: RunContext) -> dict[str, object]:
    """Compute technical, alpha, fundamental and sentiment features from the offline store."""
    with OfflineStore(ctx.offline_store_path) as store:
        # Volume adjusted in memory only (the stored volume stays raw): a 1:10 consolidation would
        # otherwise look like a 90% collapse of trading to the volume features.
        raw = store.read("prices")
        # Traded value from the raw close and volume (the alpha view's liquidity), before adjusting.
        raw = raw.assign(traded_value=raw["close"] * raw["volume"])
        prices = with_adjusted_volume(raw, store.read("adjustment_factors"))
        benchmark = store.read("benchmark")
        fundamentals = store.read("fundamentals")
        breaks = store.read("series_breaks")
        scored, scored_by = active_scores(store.read("scored_documents"), ctx.data_dir)
    if prices.empty:
        raise TrainingError("the offline store holds no prices: run the ingest stage first")
    benchmark = _run_benchmark(ctx, benchmark)
    close = pd.Timedelta(ctx.config.features.session_close_utc + ":00")
    # Windows count the exchange's sessions (when configured) and never span a series break.
    sessions = run_sessions(ctx.config.calendar.exchange, prices[DATE])
    prices = _on_sessions(ctx, prices, sessions)
    jobs = {
        "technical_features": lambda: technical_features(
            prices, benchmark.set_index(DATE)["close"], sessions=sessions, breaks=breaks
        ),
        # 163 features over a whole exchange: computed and written a group of tickers at a time.
        "alpha_features": lambda: alpha_feature_chunks(prices, sessions=sessions, breaks=breaks),
        "fundamental_features": lambda: (
            fundamental_features(prices, fundamentals, breaks=breaks) if not fundamentals.empty else None
        ),
        "sentiment_features": lambda: (
            sentiment_features(prices, scored, session_close_utc=close, sessions=sessions, breaks=breaks)
            if not scored.empty
            else None
        ),
    }
    summary: dict[str, object] = {}
    technical: pd.DataFrame | None = None
    for view, compute in tqdm(jobs.items(), desc="  views", disable=ctx.progress_disabled, file=ctx.out, leave=False):
        frame = compute()
        note = ""
        if frame is None:
            frame, note = empty_features(view), " (no input data in the store: view left empty)"
        if isinstance(frame, pd.DataFrame):
            path, rows = write_feature_file(ctx.data_dir, view, frame), len(frame)
        else:
            path, rows = write_feature_chunks(ctx.data_dir, view, frame)
        if view == "sentiment_features" and scored_by is not None:
            note += f" (document scores of text model version {scored_by})"
        print(f"  {view:<22} {rows:>9,} rows -> {path}{note}", file=ctx.out)
        summary[view] = rows
        if view == "technical_features" and isinstance(frame, pd.DataFrame):
            technical = frame
    summary.update(_market_views(ctx, benchmark, technical))
    return summary


def _on_sessions(ctx: RunContext, prices: pd.DataFrame, sessions: pd.DatetimeIndex | None) -> pd.DataFrame:
    """The bars on the exchange's sessions; the count of those left out is printed (health names them)."""
    kept = on_sessions(prices, sessions)
    if len(kept) < len(prices):
        closed = prices.loc[~prices.index.isin(kept.index), DATE].nunique()
        print(
            f"  {len(prices) - len(kept):,} bars on {closed} day(s) {ctx.config.calendar.exchange} was closed left out "
            "(health: off_calendar_dates)",
            file=ctx.out,
        )
    return kept


def _market_views(ctx: RunContext, benchmark: pd.DataFrame, technical: pd.DataFrame | None) -> dict[str, object]:
    """The regime history of the run's benchmark and each ticker's trailing returns (feature_repo.market)."""
    frames: dict[str, pd.DataFrame] = {}
    if not benchmark.empty:
        symbol = str(benchmark["symbol"].iloc[0])
        try:
            frames[REGIME_VIEW] = regime_view_frame(benchmark.set_index(DATE)["close"], symbol)
        except RegimeInputError as e:
            raise TrainingError(f"benchmark {symbol}: {e}") from e
    if technical is not None:
        frames[RETURN_WINDOW_VIEW] = return_window_frame(technical[[TICKER, DATE, "ret_1d"]])
    for view, frame in frames.items():
        path = write_market_file(ctx.data_dir, view, frame)
        print(f"  {view:<22} {len(frame):>9,} rows -> {path}", file=ctx.out)
    return {view: len(frame) for view, frame in frames.items()}


def _run_benchmark(ctx: RunContext, benchmark: pd.DataFrame) -> pd.DataFrame:
    """The rows of the run's benchmark: ``signals.benchmark`` when set, else the only one stored.

    Per-day vendor files route every index of the exchange to the benchmark table (XJO, XAO, XKO and
    the sector indices), so the table may hold many symbols; the run names the one it measures by.
    """
    symbols = sorted(benchmark["symbol"].unique())
    wanted = ctx.config.signals.benchmark if ctx.config.signals is not None else None
    if wanted is None:
        if len(symbols) > 1:
            raise TrainingError(
                f"the store holds {len(symbols)} benchmarks {symbols[:10]}: name one in signals.benchmark"
            )
        return benchmark
    if wanted not in symbols:
        raise TrainingError(f"signals.benchmark '{wanted}' is not in the store; it holds {symbols[:20]}")
    return benchmark[benchmark["symbol"] == wanted]
