"""The dense inputs every allocation component shares: returns and features on one (session x ticker) grid.

Timing: ``returns[t]`` is the simple return from the close of ``dates[t-1]`` to the close of
``dates[t]``; ``features[t]`` is known at the close of ``dates[t]``. A decision made at the close
of ``t`` may use ``features[: t + 1]`` and ``returns[: t + 1]`` and earns ``returns[t + 1]``.

Names that enter and leave: a panel may hold every ticker that is ever a member (of a
point-in-time universe) or ever priced (a fixed list of names with partial histories). Three
masks, kept apart because they mean different things to a book:

* ``priced[t, i]``: ticker i has a close on ``dates[t]``. Without one its return is 0 and the
  return on its next close spans the gap; a held name without a close (a halt) cannot be traded,
  so it is carried at its last close until it trades again.
* ``exits[t, i]``: ``dates[t]`` is the last close of one of i's series: a delisting (a last
  close, then none in the data) or the last bar before a series break (a reused code, a masked
  corporate action). A held position is sold at that close, with costs, whether or not the day is
  a rebalance: there is no later price to sell at. After a break the name may enter again.
* ``available[t, i]``: i may be bought on ``dates[t]``: a member, priced, and not exiting there.
  The backtester refuses a target on an unavailable name and the environment masks it.

A panel without the masks (all None) is a fixed universe where every name is always available.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.errors import TrainingError

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class MarketPanel:
    """Returns, features and the benchmark of a fixed universe on a common session grid.

    Attributes:
        dates: sessions, ``datetime64[D]``, strictly increasing, shape ``[T]``.
        tickers: asset names, length ``N``.
        returns: simple daily returns, float64 ``[T, N]``, finite everywhere (``returns[0]`` is 0).
        features: float32 ``[T, N, F]``, known at each session's close; may hold NaN (missing).
        feature_names: length ``F``.
        benchmark: simple daily benchmark returns ``[T]`` (``benchmark[0]`` is 0), or None.
        label: where the data came from, shown on every table and plot.
        available: bool ``[T, N]``, which names may be bought on each session (a member with a
            close that is not its last), or None when every name always may.
        priced: bool ``[T, N]``, which names have a close on each session, or None (all do).
        exits: bool ``[T, N]``, the last close of a series (delisting or break), or None (none).
    """

    dates: npt.NDArray[np.datetime64]
    tickers: tuple[str, ...]
    returns: FloatArray
    features: npt.NDArray[np.float32]
    feature_names: tuple[str, ...]
    benchmark: FloatArray | None
    label: str
    available: npt.NDArray[np.bool_] | None = None
    priced: npt.NDArray[np.bool_] | None = None
    exits: npt.NDArray[np.bool_] | None = None

    def __post_init__(self) -> None:
        t, n = self.returns.shape if self.returns.ndim == 2 else (-1, -1)
        if t < 0 or n != len(self.tickers) or self.dates.shape != (t,):
            raise TrainingError(
                f"returns must be [sessions, tickers] = [{self.dates.size}, {len(self.tickers)}], "
                f"got {self.returns.shape}"
            )
        if self.features.shape != (t, n, len(self.feature_names)):
            raise TrainingError(f"features must be [{t}, {n}, {len(self.feature_names)}], got {self.features.shape}")
        if self.benchmark is not None and self.benchmark.shape != (t,):
            raise TrainingError(f"benchmark must be [{t}], got {self.benchmark.shape}")
        for name in ("available", "priced", "exits"):
            mask = getattr(self, name)
            if mask is not None and (mask.shape != (t, n) or mask.dtype != np.bool_):
                raise TrainingError(f"{name} must be a bool [{t}, {n}] mask, got {mask.dtype} {mask.shape}")
        bad = ~np.isfinite(self.returns)
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            raise TrainingError(
                f"returns hold {int(bad.sum())} NaN/inf value(s); the first is ticker "
                f"{self.tickers[col]!r} on {self.dates[row]}: fill or drop the ticker before allocating"
            )
        if t > 1 and not (np.diff(self.dates.astype("datetime64[D]").astype(np.int64)) > 0).all():
            raise TrainingError("dates must be strictly increasing")

    @property
    def n_sessions(self) -> int:
        return int(self.dates.size)

    @property
    def n_assets(self) -> int:
        return len(self.tickers)

    def available_at(self, t: int) -> npt.NDArray[np.bool_]:
        """Which names may be held on session position ``t`` (all of them without a mask)."""
        if self.available is None:
            return np.ones(self.n_assets, dtype=bool)
        row: npt.NDArray[np.bool_] = self.available[t]
        return row

    def priced_at(self, t: int) -> npt.NDArray[np.bool_]:
        """Which names have a close on session position ``t`` (all of them without a mask)."""
        if self.priced is None:
            return np.ones(self.n_assets, dtype=bool)
        row: npt.NDArray[np.bool_] = self.priced[t]
        return row

    def exits_at(self, t: int) -> npt.NDArray[np.bool_]:
        """Which names have their last close of a series on session position ``t`` (none without a mask)."""
        if self.exits is None:
            return np.zeros(self.n_assets, dtype=bool)
        row: npt.NDArray[np.bool_] = self.exits[t]
        return row

    def with_features(self, features: npt.NDArray[np.float32], feature_names: tuple[str, ...]) -> MarketPanel:
        """The same panel (dates, returns, masks) with other features."""
        return MarketPanel(
            self.dates,
            self.tickers,
            self.returns,
            features,
            feature_names,
            self.benchmark,
            self.label,
            self.available,
            self.priced,
            self.exits,
        )

    def slice(self, start: int, stop: int) -> MarketPanel:
        """Sessions ``start:stop`` (positions), as a panel of its own (views, not copies).

        The checks of ``__post_init__`` are skipped: a slice of a checked panel passes them, and a
        backtest slices at every rebalance, where re-scanning the history for NaN would cost
        O(sessions x tickers) each time.
        """
        part = object.__new__(MarketPanel)
        for name, value in (
            ("dates", self.dates[start:stop]),
            ("tickers", self.tickers),
            ("returns", self.returns[start:stop]),
            ("features", self.features[start:stop]),
            ("feature_names", self.feature_names),
            ("benchmark", None if self.benchmark is None else self.benchmark[start:stop]),
            ("label", self.label),
            ("available", None if self.available is None else self.available[start:stop]),
            ("priced", None if self.priced is None else self.priced[start:stop]),
            ("exits", None if self.exits is None else self.exits[start:stop]),
        ):
            object.__setattr__(part, name, value)
        return part

    def with_feature_lag(self, lag: int) -> MarketPanel:
        """The panel with features shifted ``lag`` sessions later (the first ``lag`` rows are NaN).

        An environment that trades at the close of t on ``features[t]`` then trades on what was
        known at the close of ``t - lag``: the one-session execution lag of every backtest here.
        """
        if lag < 0:
            raise TrainingError(f"lag must be >= 0, got {lag}")
        if lag == 0:
            return self
        shifted = np.full_like(self.features, np.nan)
        shifted[lag:] = self.features[:-lag]
        return self.with_features(shifted, self.feature_names)

    def position(self, day: str | np.datetime64 | pd.Timestamp) -> int:
        """Position of the first session on or after ``day``."""
        return int(np.searchsorted(self.dates, np.datetime64(pd.Timestamp(day).date(), "D")))

    def require_window(self, window: int, what: str = "the observation window") -> None:
        """Raise unless the panel has more sessions than ``window`` (one decision needs window + 1)."""
        if self.n_sessions <= window:
            raise TrainingError(
                f"{what} is {window} sessions but the data hold only {self.n_sessions} "
                f"({self.dates[0] if self.n_sessions else '-'}..{self.dates[-1] if self.n_sessions else '-'}): "
                "use a shorter window or more history"
            )


def panel_from_frames(
    close: pd.DataFrame,
    features: pd.DataFrame | None,
    feature_names: list[str],
    *,
    benchmark_close: pd.Series | None,
    label: str,
    members: pd.DataFrame | None = None,
    breaks: pd.DataFrame | None = None,
) -> MarketPanel:
    """Build a panel from wide closes, long features (``date, ticker, <features>``) and a benchmark.

    Without ``members`` (a fixed universe), tickers with any missing close inside the window are
    refused by name: a portfolio cannot hold a name it has no price for. With ``members`` (a
    boolean sessions x tickers mask of a point-in-time universe, aligned to ``close``; a ticker or
    session absent from it is not a member; all True for a fixed list of names with partial
    histories), missing closes are allowed and the panel carries the ``available``, ``priced`` and
    ``exits`` masks (module docstring). ``breaks`` (rows with ``ticker`` and ``date``, the first bar
    of a new series) end a series at the last close before them.
    """
    close = close.sort_index()
    if members is not None:
        returns, priced = _returns_with_gaps(close)
        exits = _series_ends(close, priced, breaks)
        aligned = members.reindex(index=close.index, columns=close.columns, fill_value=False).to_numpy(bool)
        masks = (aligned & priced & ~exits, priced, exits)
        return _assemble(close, returns, masks, features, feature_names, benchmark_close=benchmark_close, label=label)
    missing = close.isna()
    if missing.to_numpy().any():
        counts = missing.sum()
        worst = counts[counts > 0].sort_values(ascending=False)
        first_day = missing[worst.index[0]].idxmax()
        raise TrainingError(
            f"closes missing for {len(worst)} ticker(s) ({', '.join(map(str, worst.index[:5]))}); "
            f"{worst.index[0]!r} first lacks one on {pd.Timestamp(first_day).date()}: "
            "restrict the universe or the window to where every ticker trades"
        )
    values = close.to_numpy(np.float64)
    returns = np.zeros_like(values)
    returns[1:] = values[1:] / values[:-1] - 1.0
    return _assemble(close, returns, None, features, feature_names, benchmark_close=benchmark_close, label=label)


def _returns_with_gaps(close: pd.DataFrame) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Returns of names with gaps (0 without a close, the next close spanning the gap) and where they are priced."""
    values = close.to_numpy(np.float64, na_value=np.nan)
    priced = np.isfinite(values)
    # The last close at or before t-1, within each ticker's own column: never across tickers.
    previous = np.vstack([np.full((1, values.shape[1]), np.nan), close.ffill().to_numpy(np.float64)[:-1]])
    with np.errstate(invalid="ignore", divide="ignore"):
        returns = np.where(priced & np.isfinite(previous), values / previous - 1.0, 0.0)
    return returns, priced


def _series_ends(
    close: pd.DataFrame, priced: npt.NDArray[np.bool_], breaks: pd.DataFrame | None
) -> npt.NDArray[np.bool_]:
    """The last close of each series: before the panel's end with no close after it, or before a break."""
    t, n = priced.shape
    exits = np.zeros((t, n), dtype=bool)
    any_price = priced.any(axis=0)
    # Position of each column's last close; a name priced on the last session has not delisted.
    last = t - 1 - np.argmax(priced[::-1], axis=0)
    ended = any_price & (last < t - 1)
    exits[last[ended], np.flatnonzero(ended)] = True
    if breaks is None or breaks.empty:
        return exits
    column_of = {str(c): i for i, c in enumerate(close.columns)}
    index = pd.DatetimeIndex(close.index)
    for ticker, date in breaks[["ticker", "date"]].drop_duplicates().itertuples(index=False):
        col = column_of.get(str(ticker))
        at = int(index.searchsorted(pd.Timestamp(date)))
        if col is None or at >= t:  # another ticker's break, or one after the panel's end
            continue
        before = np.flatnonzero(priced[:at, col])
        if before.size:
            exits[before[-1], col] = True
    return exits


def _assemble(
    close: pd.DataFrame,
    returns: FloatArray,
    masks: tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.bool_]] | None,
    features: pd.DataFrame | None,
    feature_names: list[str],
    *,
    benchmark_close: pd.Series | None,
    label: str,
) -> MarketPanel:
    dates = pd.DatetimeIndex(close.index).values.astype("datetime64[D]")
    tickers = tuple(str(c) for c in close.columns)
    feats = np.full((len(dates), len(tickers), len(feature_names)), np.nan, dtype=np.float32)
    if features is not None and feature_names:
        frame = features.copy()
        frame["date"] = pd.DatetimeIndex(frame["date"]).values.astype("datetime64[D]")
        row = pd.Index(dates).get_indexer(frame["date"])
        col = pd.Index(tickers).get_indexer(pd.Index(frame["ticker"].astype(str)))
        keep = (row >= 0) & (col >= 0)
        feats[row[keep], col[keep]] = frame.loc[keep, feature_names].to_numpy(np.float32)
    bench = None
    if benchmark_close is not None:
        b = benchmark_close.reindex(close.index).ffill().to_numpy(np.float64)
        if np.isnan(b).all():
            raise TrainingError("the benchmark has no level in the window")
        # Before the benchmark's first level (an index launched inside the window, as the S&P/ASX 200
        # in April 2000) its return is 0: nothing is filled from the future.
        bench = np.zeros_like(b)
        with np.errstate(invalid="ignore"):
            bench[1:] = np.where(np.isfinite(b[:-1]), b[1:] / b[:-1] - 1.0, 0.0)
    available, priced, exits = (None, None, None) if masks is None else masks
    return MarketPanel(dates, tickers, returns, feats, tuple(feature_names), bench, label, available, priced, exits)


def synthetic_panel(
    n_sessions: int, n_assets: int, n_features: int = 6, *, seed: int = 0, start: str = "2000-01-03"
) -> MarketPanel:
    """A seeded SYNTHETIC panel (one-factor returns, AR(1) features) for tests and benchmarks only."""
    rng = np.random.default_rng(seed)
    market = rng.normal(0.0003, 0.01, n_sessions)
    beta = rng.uniform(0.6, 1.4, n_assets)
    idio = rng.normal(0.0, 0.015, (n_sessions, n_assets))
    returns = market[:, None] * beta[None, :] + idio
    returns[0] = 0.0
    feats = rng.normal(0.0, 1.0, (n_sessions, n_assets, n_features)).astype(np.float32)
    for t in range(1, n_sessions):
        feats[t] = 0.9 * feats[t - 1] + 0.1 * feats[t]
    bench = market.copy()
    bench[0] = 0.0
    dates = np.busday_offset(np.datetime64(start, "D"), np.arange(n_sessions), roll="forward")
    return MarketPanel(
        dates=dates,
        tickers=tuple(f"SYN{i:04d}" for i in range(n_assets)),
        returns=returns,
        features=feats,
        feature_names=tuple(f"f{i}" for i in range(n_features)),
        benchmark=bench,
        label="SYNTHETIC data: a wiring check, NOT a quality figure",
    )
