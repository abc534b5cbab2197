"""Synthetic price series with planted corporate actions, shared by the corporate-actions tests.

Nothing here is market data: flat or gently drifting closes generated from a seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DAYS = pd.bdate_range("2010-01-04", periods=40)
JUMP = 20  # the bar of the planted corporate action


def bars(ticker: str, closes: np.ndarray, volume: np.ndarray | float = 1_000_000.0) -> pd.DataFrame:
    """Synthetic raw bars in the price contract (adj_close = close, as a raw source loads them)."""
    n = len(closes)
    return pd.DataFrame(
        {
            "ticker": ticker,
            "date": DAYS[:n],
            "open": closes,
            "high": closes * 1.01,
            "low": closes * 0.99,
            "close": closes,
            "adj_close": closes,
            "volume": np.broadcast_to(volume, n).astype(float),
            "source": "synthetic-test",
            "synthetic": True,
        }
    )


def drifting(start: float, n: int = 40, seed: int = 0) -> np.ndarray:
    """A synthetic close series moving at most ~1% a day."""
    rng = np.random.default_rng(seed)
    return np.round(start * np.exp(np.cumsum(rng.normal(0, 0.005, n))), 4)


def consolidated(ratio: float = 10.0, day_move: float = 1.04) -> tuple[np.ndarray, np.ndarray]:
    """Closes and volumes with a planted 1:ratio consolidation at JUMP whose own day also moved."""
    closes = drifting(0.5)
    closes[JUMP:] = np.round(closes[JUMP:] * ratio * day_move, 4)
    volume = np.full(len(closes), 2_000_000.0)
    volume[JUMP:] /= ratio
    return closes, volume


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def write_actions(path: Path, *rows: str) -> Path:
    path.write_text("ticker,ex_date,kind,ratio,amount\n" + "".join(f"{r}\n" for r in rows))
    return path
