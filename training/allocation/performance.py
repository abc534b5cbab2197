"""Performance analytics of backtests: metrics, the deflated Sharpe ratio, a block bootstrap, stress windows, regimes.

Inputs are :class:`~training.allocation.results.StrategyResult` objects or plain daily simple
returns (net of costs), one per session. The conventions are those of
:mod:`training.evaluation`: 252 sessions a year, a risk-free rate of 0, a compound annual return,
a ddof=1 volatility (see :data:`DEFINITIONS`, printed beside every table).

**Sharpe units.** Tables show the annualised Sharpe ratio. The probabilistic and deflated Sharpe
ratios work in per-period (daily) units throughout, as Bailey and López de Prado define them: the
Sharpe ratio, its benchmark and the variance of Sharpe ratios across trials are all daily figures
(divide an annual Sharpe by sqrt(252), an annual variance by 252), because the standard error
``sqrt((1 - skew SR + (kurt - 1) / 4 SR^2) / (T - 1))`` is that of a per-period estimate over T
periods.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_repo.bootstrap import stationary_bootstrap_indices
from feature_repo.transforms.regime import (
    BEAR,
    BULL,
    SIDEWAYS,
    TREND_WINDOW,
    UNKNOWN,
    VOL_WINDOW,
    RegimeInputError,
)
from feature_repo.transforms.regime import classify_regimes as _classify_regimes
from training.allocation.results import FloatArray, StrategyResult, check_comparable
from training.errors import TrainingError
from training.evaluation.metrics import SESSIONS_PER_YEAR

EULER_MASCHERONI: Final = 0.5772156649015329
QUANTILES: Final = (0.05, 0.25, 0.5, 0.75, 0.95)
# Peak-to-trough episodes of the S&P 500 (closing levels), named as people remember them.
STRESS_WINDOWS: Final[Mapping[str, tuple[str, str]]] = {
    "2008 crisis": ("2008-09-01", "2009-03-09"),
    "Q4 2018 sell-off": ("2018-09-20", "2018-12-24"),
    "COVID crash March 2020": ("2020-02-19", "2020-03-23"),
    "2022 rate shock": ("2022-01-03", "2022-10-12"),
}

DEFINITIONS: Final = """\
Daily net returns r (after costs), n sessions, 252 sessions a year, risk-free rate 0.
ann_return        compound annual return: prod(1 + r) ** (252 / n) - 1.
ann_vol           std(r, ddof=1) * sqrt(252).
sharpe            mean(r) * 252 / ann_vol.
sortino           mean(r) * 252 / (sqrt(mean(min(r, 0) ** 2)) * sqrt(252)): downside deviation
                  below 0 over all n sessions.
max_drawdown      worst fall of the compounded equity from its running peak, the start (1.0)
                  included; negative.
calmar            ann_return / |max_drawdown|.
win_rate          share of sessions with r > 0.
ann_turnover      sum of one-way turnover sum |w_target - w_drifted| over the window / years
                  (a full switch of the book is 2.0).
beta, alpha       OLS of r on the benchmark's daily returns b: beta = cov(r, b) / var(b),
                  alpha = (mean(r) - beta * mean(b)) * 252 (simple annualisation).
tracking_error    std(r - b, ddof=1) * sqrt(252).
information_ratio mean(r - b) * 252 / tracking_error.
skew, kurtosis    sample skewness and (Pearson, normal = 3) kurtosis of r, population moments.
psr               probabilistic Sharpe ratio: P(true Sharpe > 0) given the daily Sharpe, n, skew
                  and kurtosis (Bailey & Lopez de Prado 2012).
dsr               deflated Sharpe ratio: the PSR against the Sharpe expected from the best of
                  n_trials skill-less strategies (Bailey & Lopez de Prado 2014); daily units, the
                  variance of Sharpe ratios across the table's strategies standing in for that
                  across all trials. Below 0.95: not distinguishable from selection luck.
"""


def performance_metrics(
    result_or_returns: StrategyResult | npt.ArrayLike,
    benchmark: npt.ArrayLike | None = None,
    *,
    turnover: npt.ArrayLike | None = None,
) -> dict[str, float]:
    """Every metric of :data:`DEFINITIONS` except ``dsr`` (which needs the number of trials).

    Args:
        result_or_returns: a backtest result, or daily simple returns ``[n]``.
        benchmark: the benchmark's daily simple returns on the same sessions, or None (beta,
            alpha, tracking error and information ratio are then NaN).
        turnover: one-way turnover per session ``[n]``; defaults to the result's own. NaN
            ``ann_turnover`` for plain returns without it.

    Returns:
        Metric name -> value; ``n_days`` is the number of sessions. NaN where a value is undefined
        (a volatility of one session, a zero drawdown under Calmar...).

    Raises:
        TrainingError: empty or non-finite returns, or a benchmark or turnover of another length.
    """
    if isinstance(result_or_returns, StrategyResult):
        r = _returns(result_or_returns.returns, "returns")
        turnover = result_or_returns.turnover if turnover is None else turnover
    else:
        r = _returns(result_or_returns, "returns")
    n = r.size
    ann_return, ann_vol, sharpe = _annualised(r)
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)) * SESSIONS_PER_YEAR)
    drawdown = max_drawdown(r)
    skew, kurtosis = _skew_kurtosis(r)
    metrics: dict[str, float] = {
        "n_days": n,
        "ann_return": ann_return,
        "ann_vol": ann_vol,
        "sharpe": sharpe,
        "sortino": float(r.mean()) * SESSIONS_PER_YEAR / downside if downside > 0 else math.nan,
        "max_drawdown": drawdown,
        "calmar": ann_return / abs(drawdown) if drawdown < 0 else math.nan,
        "win_rate": float((r > 0).mean()),
        "ann_turnover": math.nan,
    }
    if turnover is not None:
        traded = _aligned(turnover, n, "turnover")
        metrics["ann_turnover"] = float(traded.sum()) / (n / SESSIONS_PER_YEAR)
    metrics.update(_relative(r, None if benchmark is None else _aligned(benchmark, n, "benchmark")))
    metrics.update(skew=skew, kurtosis=kurtosis, psr=probabilistic_sharpe_ratio(r))
    return metrics


def max_drawdown(returns: npt.ArrayLike) -> float:
    """The worst fall of compounded equity from its running peak, starting from 1.0 (negative, 0 if none)."""
    r = _returns(returns, "returns")
    equity = np.cumprod(1.0 + r)
    peak = np.maximum(np.maximum.accumulate(equity), 1.0)
    return float(min((equity / peak - 1.0).min(), 0.0))


def psr_from_moments(sharpe: float, n_obs: int, skew: float, kurtosis: float, benchmark_sharpe: float = 0.0) -> float:
    """P(true Sharpe > ``benchmark_sharpe``) from a per-period Sharpe estimate over ``n_obs`` periods.

    ``Z((SR - SR*) sqrt(n - 1) / sqrt(1 - skew SR + (kurtosis - 1) / 4 SR^2))`` with the Pearson
    kurtosis (normal = 3). NaN with fewer than two periods or a non-positive variance term (an
    extreme skew the expansion does not cover).
    """
    variance = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if n_obs < 2 or not variance > 0 or not math.isfinite(sharpe):
        return math.nan
    return NormalDist().cdf((sharpe - benchmark_sharpe) * math.sqrt(n_obs - 1) / math.sqrt(variance))


def probabilistic_sharpe_ratio(returns: npt.ArrayLike, benchmark_sharpe: float = 0.0) -> float:
    """The PSR of daily ``returns`` against a per-period (daily) ``benchmark_sharpe``.

    The Sharpe estimate is ``mean / std(ddof=1)``; skewness and kurtosis are population moments.
    """
    r = _returns(returns, "returns")
    std = float(r.std(ddof=1)) if r.size > 1 else math.nan
    if not std > 0:
        return math.nan
    skew, kurtosis = _skew_kurtosis(r)
    return psr_from_moments(float(r.mean()) / std, r.size, skew, kurtosis, benchmark_sharpe)


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """The Sharpe ratio expected from the best of ``n_trials`` skill-less strategies (true Sharpe 0).

    ``sqrt(V) ((1 - g) Z^-1(1 - 1/N) + g Z^-1(1 - 1/(N e)))`` with g the Euler–Mascheroni
    constant, in the units of V's square root (per period for the DSR); 0 for a single trial.
    """
    if n_trials < 1:
        raise TrainingError(f"n_trials must be at least 1, got {n_trials}")
    if not (math.isfinite(sharpe_variance) and sharpe_variance >= 0):
        raise TrainingError(f"the variance of Sharpe ratios across trials must be >= 0, got {sharpe_variance}")
    if n_trials == 1:
        return 0.0
    inverse = NormalDist().inv_cdf
    gamma = EULER_MASCHERONI
    spread = (1.0 - gamma) * inverse(1.0 - 1.0 / n_trials) + gamma * inverse(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(sharpe_variance) * spread


def deflated_sharpe_ratio(returns: npt.ArrayLike, n_trials: int, sharpe_variance_across_trials: float) -> float:
    """The PSR of ``returns`` against :func:`expected_max_sharpe` of the trials (Bailey & López de Prado 2014).

    Args:
        returns: daily returns of the strategy selected.
        n_trials: the strategies and configurations tried before selecting it (>= 1).
        sharpe_variance_across_trials: variance of the trials' per-period (daily) Sharpe ratios.

    Returns:
        The probability that the true Sharpe exceeds what selection alone would produce; equal to
        the PSR against 0 for a single trial, and falling as trials are added.
    """
    benchmark_sharpe = expected_max_sharpe(n_trials, sharpe_variance_across_trials)
    return probabilistic_sharpe_ratio(returns, benchmark_sharpe)


def comparison_table(
    results: Sequence[StrategyResult],
    benchmark: npt.ArrayLike | None = None,
    *,
    n_trials: int,
    sharpe_variance: float | None = None,
) -> pd.DataFrame:
    """One row per strategy with :func:`performance_metrics` and the deflated Sharpe ratio ``dsr``.

    Args:
        results: backtests on the same sessions.
        benchmark: the benchmark's daily returns on those sessions, or None.
        n_trials: every strategy and configuration tried to get here (RL trials included), at
            least the number of rows: a DSR that counts only the finalists flatters the winner.
        sharpe_variance: variance of the daily Sharpe ratios across all trials, when known;
            otherwise that across the rows of this table (ddof=1).

    Returns:
        Frame indexed by strategy name (``strategy``), columns in :data:`DEFINITIONS` order.

    Raises:
        TrainingError: no results, results on different sessions, duplicate names, ``n_trials``
            below the number of rows, or a single row with several trials and no variance given.
    """
    _check_same_sessions(results)
    if n_trials < len(results):
        raise TrainingError(
            f"n_trials={n_trials} is below the {len(results)} strategies in the table: count every "
            "strategy and configuration tried"
        )
    rows = {r.name: performance_metrics(r, benchmark) for r in results}
    daily_sharpe = np.array([row["sharpe"] for row in rows.values()]) / math.sqrt(SESSIONS_PER_YEAR)
    if sharpe_variance is None:
        if len(results) < 2 and n_trials > 1:
            raise TrainingError("one strategy cannot estimate the variance of Sharpe ratios: pass sharpe_variance")
        sharpe_variance = float(np.nanvar(daily_sharpe, ddof=1)) if len(results) > 1 else 0.0
    for result in results:
        rows[result.name]["dsr"] = deflated_sharpe_ratio(result.returns, n_trials, sharpe_variance)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "strategy"
    return table


def format_table(table: pd.DataFrame) -> str:
    """A fixed-width text rendering for a terminal or a Markdown code block.

    Returns, volatilities, drawdowns, alpha, tracking error, win rate and turnover as percentages;
    ``psr`` and ``dsr`` with three decimals, day counts whole, other numbers with two; NaN as
    ``-``. The index is shown as the first column unless it is the default 0..n-1.
    """
    frame = table if isinstance(table.index, pd.RangeIndex) else table.reset_index()
    headers = [str(c) for c in frame.columns]
    body = [[_cell(h, v) for h, v in zip(headers, row, strict=True)] for row in frame.itertuples(index=False)]
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join(text.rstrip() for text in [line(headers), rule, *(line(row) for row in body)])


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """The simulated distribution of a strategy's equity over ``horizon`` sessions.

    Attributes:
        terminal_wealth: equity at the horizon per path, from 1.0, ``[n_paths]``.
        max_drawdown: max drawdown per path (negative), ``[n_paths]``.
        fan: quantile (0.05, 0.25, 0.5, 0.75, 0.95) -> that quantile of equity across paths on each
            day, ``[horizon]``: the bands of a fan chart (pointwise, not one path each).
        summary: rows ``terminal_wealth`` and ``max_drawdown``, columns ``p5``..``p95``.
        block: the mean block length in sessions.
    """

    terminal_wealth: FloatArray
    max_drawdown: FloatArray
    fan: dict[float, FloatArray]
    summary: pd.DataFrame
    block: int


def block_bootstrap(
    returns: npt.ArrayLike, *, block: int = 21, n_paths: int = 1000, horizon: int | None = None, seed: int = 0
) -> BootstrapResult:
    """Stationary block bootstrap (Politis & Romano 1994) of daily returns: equity paths and their quantiles.

    Each path strings together blocks of consecutive sessions, wrapping from the last session to
    the first, with block lengths geometric of mean ``block``: runs of days keep their volatility
    clustering and autocorrelation, which an i.i.d. resample (``block=1``) would destroy. All
    paths are drawn at once with numpy from ``default_rng(seed)``.

    Args:
        returns: the daily returns to resample (at least one).
        block: mean block length in sessions (>= 1).
        n_paths: number of simulated paths (>= 1).
        horizon: sessions per path; the length of ``returns`` when None.
        seed: the generator's seed: the same inputs and seed give the same result.
    """
    r = _returns(returns, "returns")
    h = r.size if horizon is None else horizon
    for name, value in (("block", block), ("n_paths", n_paths), ("horizon", h)):
        if value < 1:
            raise TrainingError(f"block_bootstrap {name} must be at least 1, got {value}")
    # The paths are drawn by the shared ground-floor bootstrap (the gateway's forecast uses it too).
    index = stationary_bootstrap_indices(
        r.size, n_paths=n_paths, horizon=h, block=block, rng=np.random.default_rng(seed)
    )
    equity: FloatArray = np.cumprod(1.0 + r[index], axis=1, dtype=np.float64)
    peak = np.maximum(np.maximum.accumulate(equity, axis=1), 1.0)
    drawdown = np.minimum((equity / peak - 1.0).min(axis=1), 0.0)
    terminal = equity[:, -1]
    bands = np.quantile(equity, QUANTILES, axis=0)
    columns = [f"p{round(q * 100)}" for q in QUANTILES]
    summary = pd.DataFrame(
        [np.quantile(terminal, QUANTILES), np.quantile(drawdown, QUANTILES)],
        index=pd.Index(["terminal_wealth", "max_drawdown"], name="metric"),
        columns=columns,
    )
    fan = {q: bands[i] for i, q in enumerate(QUANTILES)}
    return BootstrapResult(terminal, drawdown, fan, summary, block)


def stress_table(
    results: Sequence[StrategyResult],
    benchmark: npt.ArrayLike | None = None,
    dates: npt.NDArray[np.datetime64] | None = None,
    *,
    windows: Mapping[str, tuple[str, str]] = STRESS_WINDOWS,
) -> pd.DataFrame:
    """Each strategy's (and the benchmark's) cumulative return and max drawdown inside each stress window.

    A window runs from the close on its start day (or the last session before it) to the close
    on its end day: the returns of the sessions after ``start`` up to ``end`` inclusive. A window
    the data only partly cover is computed on the sessions they hold and marked ``partial`` in
    ``coverage``; one they miss gets a single row with ``coverage`` "none: outside the data" and
    no numbers, so a reader sees it was skipped rather than calm.

    Args:
        results: backtests on the same sessions.
        benchmark: the benchmark's daily returns on those sessions, or None.
        dates: the sessions ``benchmark`` is on, checked against the results'; None to skip.
        windows: name -> (start, end), ISO dates.

    Returns:
        Long frame: ``window``, ``strategy``, ``first``, ``last`` (sessions used), ``days``,
        ``cum_return``, ``max_drawdown``, ``coverage``.
    """
    first = _check_same_sessions(results)
    sessions = first.dates.astype("datetime64[D]")
    if dates is not None and not np.array_equal(np.asarray(dates, dtype="datetime64[D]"), sessions):
        raise TrainingError("the benchmark's dates differ from the results' sessions")
    series = {r.name: _returns(r.returns, r.name) for r in results}
    if benchmark is not None:
        series["benchmark"] = _aligned(benchmark, sessions.size, "benchmark")
    rows: list[dict[str, object]] = []
    for window, (start, end) in windows.items():
        lo, hi = np.datetime64(start, "D"), np.datetime64(end, "D")
        inside = (sessions > lo) & (sessions <= hi)
        if not inside.any():
            rows.append({"window": window, "strategy": "-", "coverage": f"none: outside the data ({start}..{end})"})
            continue
        full = sessions[0] <= lo and sessions[-1] >= hi
        coverage = "full" if full else f"partial: the data hold {sessions[inside][0]}..{sessions[inside][-1]}"
        for name, r in series.items():
            part = r[inside]
            rows.append(
                {
                    "window": window,
                    "strategy": name,
                    "first": str(sessions[inside][0]),
                    "last": str(sessions[inside][-1]),
                    "days": int(part.size),
                    "cum_return": float(np.prod(1.0 + part) - 1.0),
                    "max_drawdown": max_drawdown(part),
                    "coverage": coverage,
                }
            )
    columns = ["window", "strategy", "first", "last", "days", "cum_return", "max_drawdown", "coverage"]
    return pd.DataFrame(rows, columns=columns)


def classify_regimes(
    benchmark_returns: npt.ArrayLike | None,
    dates: npt.ArrayLike,
    *,
    trend_window: int = TREND_WINDOW,
    vol_window: int = VOL_WINDOW,
) -> npt.NDArray[np.str_]:
    """Label each session bull, bear or sideways from the benchmark's past alone.

    The rule lives on the ground floor (:mod:`feature_repo.transforms.regime`), where the
    ``market_regime`` view the gateway serves is computed by the same function; this wrapper only
    maps its input errors to :class:`TrainingError`.
    """
    try:
        return _classify_regimes(benchmark_returns, dates, trend_window=trend_window, vol_window=vol_window)
    except RegimeInputError as e:
        raise TrainingError(str(e)) from e


def regime_table(results: Sequence[StrategyResult], regimes: npt.ArrayLike) -> pd.DataFrame:
    """Each strategy's annualised return, volatility and Sharpe over the sessions of each regime.

    The sessions of a regime are not contiguous: the annual return is that of a book earning only
    those days, ``prod(1 + r) ** (252 / days) - 1``.

    Returns:
        Long frame: ``regime`` (bull, bear, sideways, unknown; those present), ``strategy``,
        ``days``, ``ann_return``, ``ann_vol``, ``sharpe``.
    """
    first = _check_same_sessions(results)
    labels = np.asarray(regimes).astype(str)
    if labels.shape != first.dates.shape:
        raise TrainingError(f"regimes must hold one label per session [{first.dates.size}], got {labels.shape}")
    rows: list[dict[str, object]] = []
    for regime in (r for r in (BULL, BEAR, SIDEWAYS, UNKNOWN) if (labels == r).any()):
        mask = labels == regime
        for result in results:
            ann_return, ann_vol, sharpe = _annualised(result.returns[mask])
            rows.append(
                {
                    "regime": regime,
                    "strategy": result.name,
                    "days": int(mask.sum()),
                    "ann_return": ann_return,
                    "ann_vol": ann_vol,
                    "sharpe": sharpe,
                }
            )
    return pd.DataFrame(rows, columns=["regime", "strategy", "days", "ann_return", "ann_vol", "sharpe"])


# How format_table shows a column, by name.
_PERCENT: Final = frozenset(
    {"ann_return", "ann_vol", "max_drawdown", "alpha", "tracking_error", "win_rate", "ann_turnover", "cum_return"}
)
_DECIMALS: Final = {"psr": 3, "dsr": 3, "n_days": 0, "days": 0}


def _cell(column: str, value: object) -> str:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(value)
    number = float(value)
    if math.isnan(number):
        return "-"
    if column in _PERCENT:
        return f"{number * 100:.2f}%"
    return f"{number:.{_DECIMALS.get(column, 2)}f}"


def _annualised(r: FloatArray) -> tuple[float, float, float]:
    """Compound annual return, annualised volatility and Sharpe of daily returns (NaN where undefined)."""
    n = r.size
    ann_return = float(np.prod(1.0 + r)) ** (SESSIONS_PER_YEAR / n) - 1.0 if n else math.nan
    ann_vol = float(r.std(ddof=1)) * math.sqrt(SESSIONS_PER_YEAR) if n > 1 else math.nan
    sharpe = float(r.mean()) * SESSIONS_PER_YEAR / ann_vol if ann_vol > 0 else math.nan
    return ann_return, ann_vol, sharpe


def _relative(r: FloatArray, b: FloatArray | None) -> dict[str, float]:
    """Beta, alpha, tracking error and information ratio against the benchmark (NaN without one)."""
    if b is None or r.size < 2:
        return dict.fromkeys(("beta", "alpha", "tracking_error", "information_ratio"), math.nan)
    var_b = float(b.var(ddof=1))
    beta = float(np.cov(r, b, ddof=1)[0, 1]) / var_b if var_b > 0 else math.nan
    excess = r - b
    te = float(excess.std(ddof=1)) * math.sqrt(SESSIONS_PER_YEAR)
    return {
        "beta": beta,
        "alpha": (float(r.mean()) - beta * float(b.mean())) * SESSIONS_PER_YEAR,
        "tracking_error": te,
        "information_ratio": float(excess.mean()) * SESSIONS_PER_YEAR / te if te > 0 else math.nan,
    }


def _skew_kurtosis(r: FloatArray) -> tuple[float, float]:
    """Skewness and Pearson kurtosis (normal = 3) from population moments; NaN for a constant series."""
    centred = r - r.mean()
    m2 = float(np.mean(centred**2))
    if not m2 > 0:
        return math.nan, math.nan
    return float(np.mean(centred**3)) / m2**1.5, float(np.mean(centred**4)) / m2**2


def _returns(values: npt.ArrayLike, what: str) -> FloatArray:
    """Daily returns as a 1-D float array, refused when empty or not finite (the first bad one named)."""
    r = np.asarray(values, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise TrainingError(f"{what} must be a non-empty 1-D series, got shape {r.shape}")
    bad = np.flatnonzero(~np.isfinite(r))
    if bad.size:
        raise TrainingError(f"{what} hold {bad.size} non-finite value(s); the first is at position {int(bad[0])}")
    return r


def _aligned(values: npt.ArrayLike, n: int, what: str) -> FloatArray:
    r = _returns(values, what)
    if r.size != n:
        raise TrainingError(f"{what} has {r.size} values for {n} sessions of returns")
    return r


def _check_same_sessions(results: Sequence[StrategyResult]) -> StrategyResult:
    return check_comparable(results, "a comparison")
