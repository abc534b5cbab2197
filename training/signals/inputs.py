"""A signal run's shared data: prices, outcomes and labels of the configured universe, checked.

Read once per run from the offline store (:func:`load_inputs`) and shared by every model, the
ensemble, the baselines and the post-promotion guard. The allocation stage reads its prices through
the same helpers (:func:`read_universe`, :func:`close_panel`, :func:`point_in_time_universe`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from feature_repo.store import FeatureRepo
from feature_repo.tables import DATE, TICKER
from feature_repo.transforms.outcomes import cross_sectional_labels, forward_outcomes
from feature_repo.transforms.panel import link_across_breaks
from training.calendar import on_sessions, run_sessions
from training.errors import TrainingError
from training.evaluation.liquidity import Liquidity, liquidity_panels, traded_value_panel
from training.signals.config import SignalRunConfig, check_history, check_universe
from training.store import OfflineStore
from training.universe import Universe, check_member_counts, refresh_universe, restrict_to_members

KEYS = [DATE, TICKER]
# ADV's window when only the ADV cap needs it (costs by liquidity name their own).
DEFAULT_ADV_SESSIONS = 60


@dataclass(frozen=True, eq=False)
class SignalInputs:
    """The data every model of a run shares."""

    config: SignalRunConfig
    repo: FeatureRepo
    outcomes: pd.DataFrame
    close: pd.DataFrame
    universe: Universe | None = None  # a point-in-time rule's membership; None for a list or 'all'
    # The members' outcomes at each of learning.report_horizons, with their cross-sectional labels.
    report_outcomes: dict[int, pd.DataFrame] = field(default_factory=dict)
    # ADV and volatility on ``close``'s grid, when costs by liquidity or the ADV cap need them.
    liquidity: Liquidity | None = None

    @property
    def members(self) -> pd.DataFrame | None:
        """The daily member mask (sessions x tickers ever members), or None when every name counts."""
        return None if self.universe is None else self.universe.mask

    @property
    def test_window(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """The test segment cut at the last labelled date: every row of the table covers the same days."""
        first, last = (pd.Timestamp(d) for d in self.config.segments.test)
        return first, min(last, pd.Timestamp(self.outcomes[DATE].max()))


def load_inputs(
    config: SignalRunConfig,
    offline_store: Path,
    repo: FeatureRepo,
    *,
    exchange: str | None = None,
    with_liquidity: bool = True,
) -> SignalInputs:
    """Prices, outcomes and the close panel of the configured universe, checked against the config.

    Outcomes count the sessions of ``exchange`` (None: the data's own dates) and never span a
    stored series break. The labels (per-date rank and z-score of the excess return, and the
    binary label: above the date's median) are computed after the universe cut, over the members
    of each date only, so a non-member's return never moves a member's label.

    With a point-in-time universe rule, its membership is recomputed from the stored prices and
    written to the store (:func:`point_in_time_universe`), and only the outcomes of (ticker, date)
    pairs that are members on that date remain: they are the training and evaluation samples.

    ADV and volatility (:func:`run_liquidity`) come along when the config's costs or ADV cap need
    them, unless ``with_liquidity`` is False (the guard trades nothing).

    Raises:
        TrainingError: unknown tickers or benchmark, too little history for the segments, or a
            universe rule leaving fewer members than ``evaluation.top_k`` on some date.
    """
    prices, bench = read_universe(config, offline_store)
    check_history(config, pd.DatetimeIndex(prices[DATE]))
    breaks = read_series_breaks(offline_store)
    sessions = run_sessions(exchange, prices[DATE])
    prices = on_sessions(prices, sessions)  # a bar on a day the exchange was closed is no session
    universe = point_in_time_universe(config, offline_store, prices, config.evaluation.top_k, "evaluation.top_k")

    def member_outcomes(h: int) -> pd.DataFrame:
        outcomes = forward_outcomes(prices, bench, horizon=h, sessions=sessions, breaks=breaks)
        if universe is not None:
            outcomes = restrict_to_members(outcomes, universe.mask)
        return cross_sectional_labels(outcomes, h)

    report = {h: member_outcomes(h) for h in config.learning.report_horizons if h != config.horizon}
    outcomes = member_outcomes(config.horizon)
    if config.learning.report_horizons and config.horizon in config.learning.report_horizons:
        report[config.horizon] = outcomes
    close = close_panel(prices, breaks)
    liquidity = run_liquidity(config, prices, close) if with_liquidity else None
    return SignalInputs(config, repo, outcomes, close, universe, report, liquidity)


def run_liquidity(config: SignalRunConfig, prices: pd.DataFrame, close: pd.DataFrame) -> Liquidity | None:
    """ADV and volatility on ``close``'s grid when the costs or the ADV cap need them, else None.

    Raises:
        TrainingError: they are needed and the prices hold no volume (naming what to drop).
    """
    costs = config.costs.liquidity
    if costs is None and config.evaluation.book.adv_cap is None:
        return None
    sessions = costs.adv_sessions if costs is not None else DEFAULT_ADV_SESSIONS
    return liquidity_panels(close, traded_value_panel(prices), sessions=sessions)


def point_in_time_universe(
    config: SignalRunConfig, offline_store: Path, prices: pd.DataFrame, need: int, what: str
) -> Universe | None:
    """The universe rule's membership, recomputed from ``prices`` and stored; None without a rule.

    It is computed here, where the prices are read for training, rather than in the features stage:
    it depends on the run's rule (the ``signals`` section), not on the features, takes seconds, and
    is rewritten with ``OfflineStore.replace`` so a re-run reports 0 new, 0 changed.

    Raises:
        TrainingError: fewer than ``need`` members on a reconstitution date governing the segments.
    """
    rule = config.universe
    if isinstance(rule, tuple) or rule == "all":
        return None
    breaks = read_series_breaks(offline_store)
    with OfflineStore(offline_store) as store:
        universe = refresh_universe(store, prices, rule, breaks=breaks)
    seg = config.segments
    check_member_counts(universe, start=seg.train[0], end=seg.test[1], need=need, what=what)
    return universe


def read_series_breaks(offline_store: Path) -> pd.DataFrame:
    """Every stored series break (all reasons): the transforms split tickers' histories at them."""
    with OfflineStore(offline_store, read_only=True) as store:
        return store.read("series_breaks")


def read_universe(config: SignalRunConfig, offline_store: Path) -> tuple[pd.DataFrame, pd.Series]:
    """The configured universe's price rows and its benchmark's closes (indexed by date), checked.

    Raises:
        TrainingError: no prices, or tickers or a benchmark the data do not hold.
    """
    with OfflineStore(offline_store, read_only=True) as store:
        prices = store.read("prices")
        benchmark = store.read("benchmark")
    if prices.empty:
        raise TrainingError("the offline store holds no prices: run the ingest stage first")
    check_universe(config, set(prices[TICKER]), set(benchmark["symbol"]))
    if isinstance(config.universe, tuple):
        prices = prices[prices[TICKER].isin(config.universe)]
    bench = benchmark[benchmark["symbol"] == config.benchmark].set_index(DATE)["close"]
    return prices, bench


def close_panel(prices: pd.DataFrame, breaks: pd.DataFrame | None = None) -> pd.DataFrame:
    """Wide adjusted closes: sessions (a DatetimeIndex, ascending) x tickers.

    With series ``breaks``, each ticker's closes before a break are rescaled so the return across
    it is 0 (:func:`feature_repo.transforms.panel.link_across_breaks`): a book holding the name over
    a reused code or a masked corporate action earns nothing there, never the jump.
    """
    close = prices.pivot(index=DATE, columns=TICKER, values="adj_close").sort_index()
    close.index = pd.DatetimeIndex(close.index)
    return link_across_breaks(close, breaks)
