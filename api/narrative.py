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


# "strongly/moderately/slightly" thresholds per unit: log-odds for a binary model; for a score model
# (the centred cross-sectional rank, -0.5..0.5) a 0.02 move is two percentile points of the peers.
_STRENGTH: Final[dict[str, tuple[float, float]]] = {"log-odds": (0.2, 0.05), "score": (0.02, 0.005)}


def _strength(contribution: float, units: str) -> str:
    strong, moderate = _STRENGTH[units]
    size = abs(contribution)
    return "strongly" if size >= strong else "moderately" if size >= moderate else "slightly"


def narrative(ticker: str, score: float, top: list[tuple[str, float]], units: str = "log-odds") -> str:
    """E.g. ``"AAPL: technical score 0.62. 12-month return strongly lifts it (+0.21 log-odds); ..."``.

    ``units`` is ``log-odds`` (a binary model: ``score`` is a probability) or ``score`` (a model
    of the centred cross-sectional rank: ``score`` 0 is the peers' median).
    """
    if not top:
        return f"{ticker}: technical score {score:.2f}; no feature moved it away from the base rate."
    unit = " log-odds" if units == "log-odds" else ""
    parts = [
        f"{label(f)} {_strength(c, units)} {'lifts' if c > 0 else 'lowers'} it ({c:+.{_digits(units)}f}{unit})"
        for f, c in top
    ]
    pivot = 0.5 if units == "log-odds" else 0.0
    stance = "above" if score > pivot else "below" if score < pivot else "at"
    if units == "log-odds":
        head = f"{ticker}: technical score {score:.2f}, {stance} even odds of beating peers over 21 sessions. "
    else:
        head = f"{ticker}: technical score {score:+.3f}, {stance} the peers' median expected 21-session rank. "
    return head + f"{parts[0][0].upper()}{parts[0][1:]}" + "".join(f"; {p}" for p in parts[1:]) + "."


def _digits(units: str) -> int:
    return 2 if units == "log-odds" else 3
