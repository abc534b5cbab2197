"""Consistency of one daily bar: open and close inside [low, high], high not below low.

Shared by the price loaders (user CSV/Parquet files and per-day vendor files) so both apply the
same tolerance and say the same thing. A violation is an error in a price file unless the user
chose to keep such bars (``bracket_violations: warn``); in a benchmark or index file it is always
only a counted warning, because a benchmark is read for its close and an index open is not a trade
(real S&P/ASX 200 files carry opens outside the day's range).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

__all__ = ["BRACKET_TOLERANCE", "BracketPolicy", "BracketViolations", "bracket_violations"]

BracketPolicy = Literal["refuse", "warn"]

# Exports round OHLC columns independently, so a close can exceed the high by a rounding step;
# a relative tolerance keeps that from being flagged.
BRACKET_TOLERANCE: Final = 1e-6


@dataclass(frozen=True)
class BracketViolations:
    """Boolean masks over the bars; NaN values (close-only or halted bars) never violate."""

    inverted: np.ndarray
    open_outside: np.ndarray
    close_outside: np.ndarray

    @property
    def any(self) -> np.ndarray:
        """Bars with at least one violation."""
        return np.asarray(self.inverted | self.open_outside | self.close_outside, dtype=bool)

    def describe(self, position: int, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> str:
        """The violation of the bar at ``position`` in words, for a problem or a warning."""
        if self.inverted[position]:
            return f"high {high[position]:g} is below low {low[position]:g}"
        column = "open" if self.open_outside[position] else "close"
        value = open_[position] if column == "open" else close[position]
        return f"{column} {value:g} is outside the bar's range [low {low[position]:g}, high {high[position]:g}]"


def bracket_violations(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> BracketViolations:
    """Finds bars whose high is below their low or whose open/close lies outside [low, high].

    An inverted bar is reported as inverted only (its range means nothing), so a bar counts once.
    """
    with np.errstate(invalid="ignore"):
        inverted = high < low
        slack = BRACKET_TOLERANCE * np.abs(high)

        def outside(value: np.ndarray) -> np.ndarray:
            return np.asarray(~inverted & ((value > high + slack) | (value < low - slack)), dtype=bool)

        return BracketViolations(inverted, outside(open_), outside(close))
