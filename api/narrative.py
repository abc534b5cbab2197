"""A short deterministic narrative from SHAP contributions (no language model, same input -> same text)."""

from __future__ import annotations

from typing import Final

LABELS: Final[dict[str, str]] = {
    "ret_1d": "1-day return",
    "ret_5d": "1-week return",
    "ret_21d": "1-month return",
    "ret_63d": "3-month return",
    "ret_126d": "6-month return",
    "ret_252d": "12-month return",
    "vol_21d": "1-month volatility",
    "vol_63d": "3-month volatility",
    "downside_vol_63d": "3-month downside volatility",
    "rsi_14": "14-day RSI",
    "macd": "MACD",
    "macd_signal": "MACD signal line",
    "macd_hist": "MACD histogram",
    "dist_sma_50": "distance from the 50-day average",
    "dist_sma_200": "distance from the 200-day average",
    "volume_zscore_21d": "unusual volume",
    "beta_252d": "market beta",
    "resid_mom_126d": "6-month residual momentum",
}


def label(feature: str) -> str:
    """A reader's name for a feature (cross-sectional variants say so)."""
    for suffix, words in (("_csrank", " (rank vs peers)"), ("_csz", " (z-score vs peers)")):
        if feature.endswith(suffix):
            return LABELS.get(feature.removesuffix(suffix), feature.removesuffix(suffix)) + words
    return LABELS.get(feature, feature)


def _strength(contribution: float) -> str:
    size = abs(contribution)
    return "strongly" if size >= 0.2 else "moderately" if size >= 0.05 else "slightly"


def narrative(ticker: str, probability: float, top: list[tuple[str, float]]) -> str:
    """E.g. ``"AAPL: technical score 0.62. 12-month return strongly lifts it (+0.21 log-odds); ..."``."""
    if not top:
        return f"{ticker}: technical score {probability:.2f}; no feature moved it away from the base rate."
    parts = [f"{label(f)} {_strength(c)} {'lifts' if c > 0 else 'lowers'} it ({c:+.2f} log-odds)" for f, c in top]
    stance = "above" if probability > 0.5 else "below" if probability < 0.5 else "at"
    return (
        f"{ticker}: technical score {probability:.2f}, {stance} even odds of beating peers over 21 sessions. "
        f"{parts[0][0].upper()}{parts[0][1:]}" + "".join(f"; {p}" for p in parts[1:]) + "."
    )
