"""The classic allocation strategies (skfolio) and the top-k-by-score strategy with limited turnover.

Every class here implements :class:`~training.allocation.strategy.Strategy`.

**Estimation window.** The skfolio strategies estimate from the trailing ``lookback`` daily returns
of the history they are handed, afresh at every :meth:`~ClassicStrategy.target` call, and
:meth:`~ClassicStrategy.fit` is a no-op. The backtester re-fits yearly but rebalances weekly: a
covariance frozen at the yearly fit would be up to a year stale, whereas "minimum variance on the
last year of returns", re-estimated at each rebalance, is what these rules mean in practice. The
history must hold more than ``lookback`` sessions (a panel's first return is a placeholder 0).

**Covariance.** Minimum variance and maximum Sharpe use Ledoit–Wolf shrinkage: with a universe as
wide as the window (2,400 tickers, 252 sessions) the sample covariance is singular, and its extreme
eigenvalues are exactly where those optimisers put their errors. Ledoit–Wolf is positive definite
by construction, so skfolio's nearest-positive-definite repair (a dense eigenvalue check, seconds
at 2,400 names) is switched off. Inverse volatility uses the sample variances (the rule's own
definition) and HRP the sample covariance, which it never inverts; neither needs the repair.

**Constraints.** Long-only and fully invested (no cash), checked with
:func:`~training.allocation.weights.check_feasible`. ``max_weight`` goes to skfolio where the
method takes it (``max_weights`` of ``MeanRisk`` and ``HierarchicalRiskParity``); inverse
volatility, which has no such option, is capped afterwards by
:func:`~training.allocation.weights.cap_weights`; equal weight needs no cap (``1/N`` is feasible).

**Names that enter and leave** (a panel with an ``available`` mask). The skfolio strategies
estimate and invest over the names available on the decision session and on at least
``min_coverage`` (90%) of the sessions of their trailing window (for equal weight: on the decision
session only). Not "every session": one partial data day (the ASX files hold one with 85 rows
instead of ~1,100) would otherwise disqualify almost every name for a year. A session without a
close contributes a return of 0 and the next close's return spans the gap, so the window's total
return is right and its variance slightly understated. A name that just joined the universe waits
until it has been available long enough. When too few names qualify for the method or the cap,
the rebalance holds equal weight over the names available now (capped, the rest in cash),
recorded as a fallback. Top-k ranks only names available now and sells held names that are not.

**Failures.** A solve can fail inside a long backtest: maximum Sharpe has no solution when every
asset's mean return over the window is negative, a halted asset has zero variance, a solver stops
short. Such a failure neither stops the backtest nor hides: the strategy holds equal weight at that
rebalance (it needs no estimate and respects every cap ``check_feasible`` admits) and appends one
line, session and cause, to its :attr:`~ClassicStrategy.fallbacks`, also logged as a warning.
Programming errors (``TypeError``...) are not caught.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Final

import numpy as np
import numpy.typing as npt
import skfolio.optimization as sko
from cvxpy.error import SolverError as CvxSolverError
from skfolio import RiskMeasure
from skfolio.exceptions import NonPositiveVarianceError, OptimizationError, SolverError
from skfolio.moments import EmpiricalCovariance, LedoitWolf
from skfolio.prior import EmpiricalPrior

from training.allocation.panel import MarketPanel
from training.allocation.results import FloatArray
from training.allocation.weights import cap_weights, check_feasible
from training.errors import TrainingError

logger = logging.getLogger(__name__)

DEFAULT_LOOKBACK: Final = 252
# What a numerical failure of an estimate or a solve raises (LinAlgError is a ValueError); anything
# else is a bug and propagates.
_SOLVE_ERRORS: Final = (
    ValueError,
    ArithmeticError,
    CvxSolverError,
    SolverError,
    OptimizationError,
    NonPositiveVarianceError,
)
# Solver output is accurate to about 1e-8; anything further off is a failed solve.
_WEIGHT_TOL: Final = 1e-6


class ClassicStrategy(ABC):
    """A long-only, fully invested skfolio strategy re-estimated on a trailing window at each rebalance.

    Attributes:
        name: shown in tables and plots.
        lookback: sessions of returns behind each estimate; None for rules that estimate nothing.
        max_weight: the most any one name may hold; None for no cap.
        fallbacks: one line per rebalance that held equal weight because the solve failed
            (``"<session>: <name> <cause>; held equal weight"``), oldest first.
    """

    # Assets the method needs; a universe below it is refused, not solved.
    min_assets: int = 2
    # With an availability mask: the share of the window's sessions a name must have been available.
    min_coverage: float = 0.9

    def __init__(self, name: str, *, lookback: int | None, max_weight: float | None) -> None:
        if lookback is not None and lookback < 2:
            raise TrainingError(f"{name}: lookback must be at least 2 sessions, got {lookback}")
        if max_weight is not None and not 0.0 < max_weight <= 1.0:
            raise TrainingError(f"{name}: max_weight must be in (0, 1], got {max_weight}")
        self.name = name
        self.lookback = lookback
        self.max_weight = max_weight
        self.fallbacks: list[str] = []

    def fit(self, history: MarketPanel) -> None:
        """Only check the universe against the method and the cap, so a bad set-up fails before the first trade.

        Nothing is learnt here: every :meth:`target` call estimates from its own trailing window
        (see the module docstring).
        """
        self._check_universe(history.n_assets)

    def target(self, history: MarketPanel, current: FloatArray) -> FloatArray:
        """Fully invested long-only weights ``[N]`` from the trailing window of ``history``.

        ``current`` is not used: these rules do not depend on the book held.

        Raises:
            TrainingError: a universe smaller than the method needs, a history not longer than
                ``lookback``, or a ``max_weight`` that a fully invested book cannot respect.
        """
        n = history.n_assets
        cap = self._check_universe(n)
        returns = self._window(history)
        columns = self._qualified(history, returns.shape[0], self.min_coverage)
        if columns is not None:
            if columns.size < self.min_assets or columns.size * cap < 1.0 - 1e-9:
                return self._fall_back(history, f"only {columns.size} name(s) available through the window", cap)
            returns = returns[:, columns]
        try:
            weights = self._solve(returns, cap)
        except _SOLVE_ERRORS as error:
            return self._fall_back(history, f"solve failed ({type(error).__name__}: {error})", cap)
        problem = _invalid(weights, returns.shape[1], cap)
        if problem is not None:
            return self._fall_back(history, f"returned invalid weights ({problem})", cap)
        cleaned = np.clip(weights, 0.0, cap)
        out: FloatArray = cleaned / cleaned.sum()
        if columns is None:
            return out
        full: FloatArray = np.zeros(n)
        full[columns] = out
        return full

    @staticmethod
    def _qualified(history: MarketPanel, rows: int, coverage: float) -> npt.NDArray[np.intp] | None:
        """Names available now and on ``coverage`` of the window's last ``rows`` sessions; None: fixed universe."""
        if history.available is None:
            return None
        window = history.available[-rows:]
        return np.flatnonzero(window[-1] & (window.mean(axis=0) >= coverage - 1e-12))

    def _check_universe(self, n: int) -> float:
        """The cap in force (1.0 without one), once ``n`` assets are known to suit the method and the cap."""
        if n < self.min_assets:
            raise TrainingError(f"{self.name} needs at least {self.min_assets} assets, the universe has {n}")
        cap = 1.0 if self.max_weight is None else self.max_weight
        check_feasible(n, cap, allow_cash=False)
        return cap

    @abstractmethod
    def _solve(self, returns: FloatArray, cap: float) -> FloatArray:
        """Raw weights from the window's returns ``[lookback, N]``, under the cap where the method takes one."""

    def _window(self, history: MarketPanel) -> FloatArray:
        if self.lookback is None:
            # The rule estimates nothing; skfolio reads the universe's width from one row.
            return history.returns[-1:]
        history.require_window(self.lookback, f"the {self.name} lookback")
        return history.returns[-self.lookback :]

    def _fall_back(self, history: MarketPanel, cause: str, cap: float) -> FloatArray:
        record = f"{history.dates[-1]}: {self.name} {cause}; held equal weight"
        self.fallbacks.append(record)
        logger.warning(record)
        if history.available is None:
            return np.full(history.n_assets, 1.0 / history.n_assets)
        now = history.available[-1]
        weights: FloatArray = np.zeros(history.n_assets)
        if now.any():
            weights[now] = cap_weights(np.full(int(now.sum()), 1.0 / int(now.sum())), cap)
        return weights


class EqualWeight(ClassicStrategy):
    """``1/N`` in every name: the no-estimate baseline (skfolio ``EqualWeighted``)."""

    min_assets = 1

    def __init__(self, *, max_weight: float | None = None, name: str = "equal_weight") -> None:
        super().__init__(name, lookback=None, max_weight=max_weight)

    def _solve(self, returns: FloatArray, cap: float) -> FloatArray:
        return np.asarray(sko.EqualWeighted().fit(returns).weights_, dtype=np.float64)


class InverseVolatility(ClassicStrategy):
    """Weights proportional to ``1 / sample volatility`` (skfolio ``InverseVolatility``), then capped."""

    min_assets = 1

    def __init__(
        self, *, lookback: int = DEFAULT_LOOKBACK, max_weight: float | None = None, name: str = "inverse_volatility"
    ) -> None:
        super().__init__(name, lookback=lookback, max_weight=max_weight)

    def _solve(self, returns: FloatArray, cap: float) -> FloatArray:
        prior = EmpiricalPrior(covariance_estimator=EmpiricalCovariance(nearest=False))
        raw = np.asarray(sko.InverseVolatility(prior_estimator=prior).fit(returns).weights_, dtype=np.float64)
        # A zero variance gives an infinite weight; leave it for _invalid to report, not to cap.
        return cap_weights(raw, cap) if np.isfinite(raw).all() else raw


class MinimumVariance(ClassicStrategy):
    """The long-only minimum-variance book of the Ledoit–Wolf covariance (skfolio ``MeanRisk``)."""

    def __init__(
        self, *, lookback: int = DEFAULT_LOOKBACK, max_weight: float | None = None, name: str = "min_variance"
    ) -> None:
        super().__init__(name, lookback=lookback, max_weight=max_weight)

    def _solve(self, returns: FloatArray, cap: float) -> FloatArray:
        return _long_only_mean_risk(returns, cap, sko.ObjectiveFunction.MINIMIZE_RISK, RiskMeasure.VARIANCE)


class MaximumSharpe(ClassicStrategy):
    """The long-only tangency book: sample means over Ledoit–Wolf volatility, risk-free rate 0 (``MeanRisk``).

    It has no solution when no book under the cap has a positive mean return over the window (in a
    falling market); that rebalance then falls back to equal weight, recorded in :attr:`fallbacks`.
    """

    def __init__(
        self, *, lookback: int = DEFAULT_LOOKBACK, max_weight: float | None = None, name: str = "max_sharpe"
    ) -> None:
        super().__init__(name, lookback=lookback, max_weight=max_weight)

    def _solve(self, returns: FloatArray, cap: float) -> FloatArray:
        # skfolio only catches the case without a cap; under one, the solver merely reports failure.
        best = _best_mean_under_cap(returns.mean(axis=0), cap)
        if best <= 0.0:
            raise ValueError(
                f"no book under the cap {cap} has a positive mean return over the window (best {best:.2e} a day)"
            )
        return _long_only_mean_risk(returns, cap, sko.ObjectiveFunction.MAXIMIZE_RATIO, RiskMeasure.STANDARD_DEVIATION)


class HierarchicalRiskParity(ClassicStrategy):
    """López de Prado's hierarchical risk parity on the sample covariance (skfolio ``HierarchicalRiskParity``)."""

    def __init__(self, *, lookback: int = DEFAULT_LOOKBACK, max_weight: float | None = None, name: str = "hrp") -> None:
        super().__init__(name, lookback=lookback, max_weight=max_weight)

    def _solve(self, returns: FloatArray, cap: float) -> FloatArray:
        prior = EmpiricalPrior(covariance_estimator=EmpiricalCovariance(nearest=False))
        model = sko.HierarchicalRiskParity(prior_estimator=prior, min_weights=0.0, max_weights=cap)
        return np.asarray(model.fit(returns).weights_, dtype=np.float64)


def classic_strategies(max_weight: float | None, lookback: int = DEFAULT_LOOKBACK) -> list[ClassicStrategy]:
    """The five classic strategies, always in this order: equal weight, inverse volatility, minimum
    variance, maximum Sharpe, hierarchical risk parity (tables and plots keep it).
    """
    return [
        EqualWeight(max_weight=max_weight),
        InverseVolatility(lookback=lookback, max_weight=max_weight),
        MinimumVariance(lookback=lookback, max_weight=max_weight),
        MaximumSharpe(lookback=lookback, max_weight=max_weight),
        HierarchicalRiskParity(lookback=lookback, max_weight=max_weight),
    ]


class TopkDropout:
    """Hold the k best-scored names in equal weight, replacing at most ``n_drop`` of them per rebalance.

    Qlib's TopkDropout idea: a ranking that reshuffles daily would churn a plain top-k book, so only
    the weakest holdings make way, and only for names scored above them. At each rebalance the
    held names are ranked by their current score together with the ``n_drop + (k - held)`` best
    names not held; the book becomes the top k of that pool. So at most ``n_drop`` held names are
    sold (one-way turnover at most ``2 * n_drop / k`` on a full book), a held name is sold only for
    a better-scored one, and empty slots are filled with the best names available.

    The score is ``history.features[-1, :, score_feature]``, the value known at the history's last
    close. A name with a NaN score is never bought; a held name whose score is NaN ranks below
    every scored one (it is the first to go). Ties go to the held name, then to the ticker listed
    first. Each name holds ``1 / k``; when fewer than k names have a score the rest stays in cash.
    A book of more than k names (a partly executed trade) first sheds its lowest-scored extras.

    Args:
        k: names held (>= 1).
        n_drop: held names replaced at most per rebalance (0..k).
        score_feature: the feature holding the score, higher = more bullish.
        max_weight: refuses a k whose ``1 / k`` exceeds it; None for no cap.
        name: shown in tables and plots.
    """

    def __init__(
        self,
        k: int,
        n_drop: int,
        *,
        score_feature: str = "score",
        max_weight: float | None = None,
        name: str = "topk_dropout",
    ) -> None:
        if k < 1:
            raise TrainingError(f"{name}: k must be at least 1, got {k}")
        if not 0 <= n_drop <= k:
            raise TrainingError(f"{name}: n_drop must be in 0..k={k}, got {n_drop}")
        if max_weight is not None:
            check_feasible(k, max_weight, allow_cash=False)
        self.name = name
        self.k = k
        self.n_drop = n_drop
        self.score_feature = score_feature

    def fit(self, history: MarketPanel) -> None:
        """Check that the panel carries the score; the rule itself learns nothing."""
        self._score_column(history)

    def target(self, history: MarketPanel, current: FloatArray) -> FloatArray:
        """The next book from the scores at ``history``'s last close and the names held in ``current``.

        Raises:
            TrainingError: the score feature missing from the panel, or fewer than k assets.
        """
        column = self._score_column(history)
        n = history.n_assets
        if n < self.k:
            raise TrainingError(f"{self.name} holds k={self.k} names but the universe has {n}")
        scores = history.features[-1, :, column].astype(np.float64)
        # Held names that are no longer available are sold outright (not counted in n_drop).
        now = history.available_at(history.n_sessions - 1)
        held = np.flatnonzero((np.asarray(current) > _WEIGHT_TOL) & now)
        ranked_held = held[_ranking(scores[held])][: self.k]
        candidates = np.setdiff1d(np.flatnonzero(np.isfinite(scores) & now), held)
        candidates = candidates[_ranking(scores[candidates])][: self.k - ranked_held.size + self.n_drop]
        pool = np.concatenate([ranked_held, candidates])
        # Held names first in the pool, so a stable sort breaks a tie in their favour.
        keep = pool[_ranking(scores[pool])][: self.k]
        weights = np.zeros(n)
        weights[keep] = 1.0 / self.k
        return weights

    def _score_column(self, history: MarketPanel) -> int:
        if self.score_feature not in history.feature_names:
            raise TrainingError(
                f"{self.name} ranks by feature {self.score_feature!r}, which the panel lacks; "
                f"it has {list(history.feature_names)}"
            )
        return history.feature_names.index(self.score_feature)


def _ranking(scores: FloatArray) -> npt.NDArray[np.intp]:
    """Positions that sort ``scores`` best first, NaN last, ties kept in their given order."""
    return np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")


def _best_mean_under_cap(mean: FloatArray, cap: float) -> float:
    """The highest mean return of a fully invested long-only book under the cap: fill the best names first."""
    ordered = np.sort(mean)[::-1]
    room = np.clip(1.0 - cap * np.arange(ordered.size), 0.0, cap)
    return float(ordered @ room)


def _long_only_mean_risk(
    returns: FloatArray, cap: float, objective: sko.ObjectiveFunction, risk: RiskMeasure
) -> FloatArray:
    """A fully invested, long-only skfolio ``MeanRisk`` book under ``cap``, on the Ledoit–Wolf prior."""
    model = sko.MeanRisk(
        objective_function=objective,
        risk_measure=risk,
        prior_estimator=_shrunk_prior(),
        min_weights=0.0,
        max_weights=cap,
        budget=1.0,
    )
    return np.asarray(model.fit(returns).weights_, dtype=np.float64)


def _shrunk_prior() -> EmpiricalPrior:
    """Sample means with the Ledoit–Wolf covariance, without the nearest-PD repair (LW is PD already)."""
    return EmpiricalPrior(covariance_estimator=LedoitWolf(nearest=False))


def _invalid(weights: FloatArray, n: int, cap: float) -> str | None:
    """Why solver weights are not a long-only, fully invested book under the cap; None when they are."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        return f"shape {w.shape} for {n} assets"
    if not np.isfinite(w).all():
        return f"{int((~np.isfinite(w)).sum())} non-finite weight(s)"
    if w.min() < -_WEIGHT_TOL:
        return f"a short weight {w.min():.3g}"
    if abs(w.sum() - 1.0) > _WEIGHT_TOL:
        return f"weights summing to {w.sum():.6f}"
    if w.max() > cap + _WEIGHT_TOL:
        return f"a weight {w.max():.4f} above the cap {cap}"
    return None
