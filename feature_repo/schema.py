"""Every feature's name, type and meaning, in serving order: the one source of truth.

The transforms produce exactly these columns in exactly this order, the Feast feature views are
built from these lists, and models record this order in their signatures. Adding a feature means
adding it here first; a test fails if a transform and this list disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

# Lists and strings serve the market views (feature_repo.market), never a model's vector.
DType = Literal["float64", "int64", "string", "float64_list", "int64_list"]


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its column name, dtype and a description shown in Feast and the docs."""

    name: str
    dtype: DType
    description: str


def _f(name: str, description: str) -> FeatureSpec:
    return FeatureSpec(name, "float64", description)


def _i(name: str, description: str) -> FeatureSpec:
    return FeatureSpec(name, "int64", description)


RETURN_WINDOWS: Final[tuple[int, ...]] = (1, 5, 21, 63, 126, 252)

# Features ranked and z-scored across tickers on each date.
TECHNICAL_CROSS_SECTIONAL: Final[tuple[str, ...]] = (
    "ret_21d",
    "ret_63d",
    "ret_252d",
    "vol_63d",
    "resid_mom_126d",
    "rsi_14",
)

_TECHNICAL_BASE: Final[tuple[FeatureSpec, ...]] = (
    *(_f(f"ret_{w}d", f"Simple return of the adjusted close over the last {w} session(s).") for w in RETURN_WINDOWS),
    _f("vol_21d", "Annualised realised volatility of daily log returns over 21 sessions."),
    _f("vol_63d", "Annualised realised volatility of daily log returns over 63 sessions."),
    _f("downside_vol_63d", "Annualised downside deviation (negative log returns only) over 63 sessions."),
    _f("rsi_14", "Wilder's relative strength index over 14 sessions, 0-100."),
    _f("macd", "MACD line (EMA12 - EMA26 of the adjusted close) divided by the adjusted close."),
    _f("macd_signal", "Nine-session EMA of the normalised MACD line."),
    _f("macd_hist", "Normalised MACD line minus its signal line."),
    _f("dist_sma_50", "Adjusted close over its 50-session simple moving average, minus one."),
    _f("dist_sma_200", "Adjusted close over its 200-session simple moving average, minus one."),
    _f(
        "volume_zscore_21d",
        "Z-score of log(1 + volume) against its trailing 21 sessions; missing where the source has no volume.",
    ),
    _f("beta_252d", "Beta of daily log returns against the benchmark over 252 sessions (126 minimum)."),
    _f(
        "resid_mom_126d",
        "Sum of benchmark-residual daily log returns over 126 sessions, using the "
        "previous session's beta (residual momentum).",
    ),
)

TECHNICAL_FEATURES: Final[tuple[FeatureSpec, ...]] = (
    *_TECHNICAL_BASE,
    *(
        _f(f"{n}_csrank", f"Percentile rank (0-1] of {n} across tickers on the date.")
        for n in TECHNICAL_CROSS_SECTIONAL
    ),
    *(_f(f"{n}_csz", f"Z-score of {n} across tickers on the date.") for n in TECHNICAL_CROSS_SECTIONAL),
)

FUNDAMENTAL_RATIOS: Final[tuple[FeatureSpec, ...]] = (
    _f("earnings_yield", "Trailing-twelve-month net income over market capitalisation."),
    _f("book_to_price", "Total equity over market capitalisation."),
    _f("sales_to_price", "Trailing-twelve-month revenue over market capitalisation."),
    _f("cash_flow_yield", "Trailing-twelve-month operating cash flow over market capitalisation."),
    _f("roe", "Trailing-twelve-month net income over total equity (missing when equity <= 0)."),
    _f("roa", "Trailing-twelve-month net income over total assets."),
    _f("debt_to_equity", "Total debt over total equity (missing when equity <= 0)."),
    _f("debt_to_assets", "Total debt over total assets."),
)

FUNDAMENTAL_FEATURES: Final[tuple[FeatureSpec, ...]] = (
    *FUNDAMENTAL_RATIOS,
    *(_f(f"{s.name}_csz", f"Z-score of {s.name} across tickers on the date.") for s in FUNDAMENTAL_RATIOS),
    _i("days_since_report", "Calendar days since the newest report used was filed; -1 when no report is visible."),
)

SENTIMENT_FEATURES: Final[tuple[FeatureSpec, ...]] = (
    _f(
        "sent_score_1d",
        "Mean document score (P(pos) - P(neg)) of the session; missing on days without documents.",
    ),
    _i("sent_count_1d", "Number of documents attributed to the session."),
    _i("sent_count_21d", "Number of documents over the last 21 sessions."),
    _f("sent_mean_21d", "Mean document score over the last 21 sessions; missing without documents."),
    _f("sent_decay_5d", "Exponentially decayed mean document score, half-life five sessions."),
    _f(
        "sent_surprise",
        "21-session mean score minus the ticker's trailing 252-session mean of daily "
        "scores, over their standard deviation.",
    ),
)

# Alpha158-style price/volume library (Qlib's ``Alpha158`` handler as the reference definitions,
# names in lower case). Prices are the adjusted ones: open/high/low are scaled by the bar's own
# adj_close/close, so every ratio is free of splits and consolidations. Qlib's VWAP0 has no input
# here (no source delivers a volume-weighted price), so the typical price (H+L+C)/3 stands in.
ALPHA_WINDOWS: Final[tuple[int, ...]] = (5, 10, 20, 30, 60)
ALPHA_LIQUIDITY_WINDOWS: Final[tuple[int, ...]] = (20, 60)

_KBAR: Final[tuple[tuple[str, str], ...]] = (
    ("kmid", "(close - open) / open."),
    ("klen", "(high - low) / open."),
    ("kmid2", "(close - open) / (high - low + 1e-12)."),
    ("kup", "(high - max(open, close)) / open: the upper shadow."),
    ("kup2", "(high - max(open, close)) / (high - low + 1e-12)."),
    ("klow", "(min(open, close) - low) / open: the lower shadow."),
    ("klow2", "(min(open, close) - low) / (high - low + 1e-12)."),
    ("ksft", "(2 close - high - low) / open."),
    ("ksft2", "(2 close - high - low) / (high - low + 1e-12)."),
)
_PRICE_RATIOS: Final[tuple[tuple[str, str], ...]] = (
    ("open0", "Open over close of the session."),
    ("high0", "High over close of the session."),
    ("low0", "Low over close of the session."),
    ("typ0", "Typical price (high + low + close) / 3 over close; stands in for Qlib's VWAP0 (no VWAP in the data)."),
)
# (name, description with {w} for the window), in Qlib's order; every one needs a full window.
_ROLLING: Final[tuple[tuple[str, str], ...]] = (
    ("roc", "Close {w} sessions ago over today's close."),
    ("ma", "Mean close of the last {w} sessions over today's close."),
    ("std", "Standard deviation of the close over {w} sessions, over today's close."),
    ("beta", "Slope of the close on time over {w} sessions, over today's close."),
    ("rsqr", "R-squared of the close's linear trend over {w} sessions."),
    ("resi", "Today's residual from the close's linear trend over {w} sessions, over today's close."),
    ("max", "Highest high of the last {w} sessions over today's close."),
    ("min", "Lowest low of the last {w} sessions over today's close."),
    ("qtlu", "80% quantile of the close over {w} sessions, over today's close."),
    ("qtld", "20% quantile of the close over {w} sessions, over today's close."),
    ("rank", "Percentile of today's close among the last {w} closes (ties averaged)."),
    ("rsv", "(close - lowest low) / (highest high - lowest low + 1e-12) over {w} sessions."),
    ("imax", "Position (1..{w}) of the highest high in the last {w} sessions, over {w}."),
    ("imin", "Position (1..{w}) of the lowest low in the last {w} sessions, over {w}."),
    ("imxd", "imax{w} - imin{w}: the order of the window's high and low."),
    ("corr", "Correlation of the close with log(volume + 1) over {w} sessions."),
    ("cord", "Correlation of close/previous close with log(volume/previous volume + 1) over {w} sessions."),
    ("cntp", "Share of the last {w} sessions with a rise of the close."),
    ("cntn", "Share of the last {w} sessions with a fall of the close."),
    ("cntd", "cntp{w} - cntn{w}."),
    ("sump", "Sum of the close's rises over the sum of its absolute changes, over {w} sessions."),
    ("sumn", "Sum of the close's falls over the sum of its absolute changes, over {w} sessions."),
    ("sumd", "sump{w} - sumn{w}."),
    ("vma", "Mean volume of the last {w} sessions over today's volume."),
    ("vstd", "Standard deviation of the volume over {w} sessions, over today's volume."),
    ("wvma", "Std over mean of |daily return| x volume over {w} sessions (volume-weighted volatility)."),
    ("vsump", "Sum of the volume's rises over the sum of its absolute changes, over {w} sessions."),
    ("vsumn", "Sum of the volume's falls over the sum of its absolute changes, over {w} sessions."),
    ("vsumd", "vsump{w} - vsumn{w}."),
)
ALPHA_ROLLING_OPS: Final[tuple[str, ...]] = tuple(op for op, _ in _ROLLING)

ALPHA_FEATURES: Final[tuple[FeatureSpec, ...]] = (
    *(_f(n, d) for n, d in _KBAR),
    *(_f(n, d) for n, d in _PRICE_RATIOS),
    *(_f(f"{op}{w}", d.format(w=w)) for op, d in _ROLLING for w in ALPHA_WINDOWS),
    *(
        _f(
            f"log_med_value_{w}",
            f"log(1 + median traded value (raw close x raw volume) over {w} sessions); a session without a bar "
            "traded nothing.",
        )
        for w in ALPHA_LIQUIDITY_WINDOWS
    ),
    *(
        _f(
            f"log_amihud_{w}",
            f"log(1 + 1e6 x mean of |daily return| / traded value over the sessions of the last {w} that "
            f"traded, at least {w // 2}) (Amihud illiquidity).",
        )
        for w in ALPHA_LIQUIDITY_WINDOWS
    ),
    _f("log_price", "log of the raw close, the price level as the market saw it (not adjusted)."),
)

FEATURES_BY_VIEW: Final[dict[str, tuple[FeatureSpec, ...]]] = {
    "technical_features": TECHNICAL_FEATURES,
    "alpha_features": ALPHA_FEATURES,
    "fundamental_features": FUNDAMENTAL_FEATURES,
    "sentiment_features": SENTIMENT_FEATURES,
}


# Features the allocator (and the gateway's inverse-volatility fallback) read online.
ALLOCATOR_FEATURES: Final[tuple[str, ...]] = (
    "ret_21d",
    "ret_63d",
    "vol_21d",
    "vol_63d",
    "downside_vol_63d",
    "beta_252d",
)

# The feature services (which views each serves) are declared in feature_repo.contract.


def names(specs: tuple[FeatureSpec, ...]) -> list[str]:
    """The column names of ``specs``, in order."""
    return [s.name for s in specs]


# Realised outcomes: the labels of training and the "truth" of monitoring's rolling IC. They look
# forward by design, so they are never features and never sit in FEATURES_BY_VIEW: each row is
# keyed by (ticker, date) and carries ``known_at``, the session the outcome becomes known, before
# which nothing may use it. The horizon is part of every name, so two horizons never collide.
OUTCOME_HORIZON: Final[int] = 21


def outcome_fields(horizon: int = OUTCOME_HORIZON, *, with_benchmark: bool = True) -> tuple[FeatureSpec, ...]:
    """The outcome columns for a horizon of ``horizon`` sessions, in output order.

    ``fwd_bench_ret_{h}d`` comes last so the other columns keep their places without a benchmark.
    """
    h = horizon
    fields = (
        _f(f"fwd_ret_{h}d", f"Simple return of the adjusted close from the session to {h} session(s) later."),
        _f(f"fwd_excess_{h}d", f"fwd_ret_{h}d minus its median across the tickers that have one on the date."),
        _i(
            f"label_{h}d",
            f"1 when fwd_excess_{h}d > 0, else 0; training relabels it against its date's universe members' median.",
        ),
    )
    if not with_benchmark:
        return fields
    return (*fields, _f(f"fwd_bench_ret_{h}d", f"Simple return of the benchmark over the same {h} session(s)."))


OUTCOME_FIELDS: Final[tuple[FeatureSpec, ...]] = outcome_fields()
