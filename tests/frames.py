"""Long ``ticker, date, ...`` frames in the feature and outcome tests: a scrambled future, and the
assertion that two frames hold the same rows and values."""

from __future__ import annotations

import numpy as np
import pandas as pd


def assert_rows_close(
    left: pd.DataFrame, right: pd.DataFrame, columns: list[str], *, rtol: float = 1e-9, atol: float = 1e-12
) -> None:
    """The same ``(ticker, date)`` rows in the same order, and every one of ``columns`` equal within
    ``rtol``/``atol`` (NaN where the other has NaN); a failure names the column."""
    assert left[["ticker", "date"]].reset_index(drop=True).equals(right[["ticker", "date"]].reset_index(drop=True))
    for col in columns:
        np.testing.assert_allclose(
            left[col].to_numpy(dtype=float),
            right[col].to_numpy(dtype=float),
            rtol=rtol,
            atol=atol,
            equal_nan=True,
            err_msg=col,
        )


def scrambled_after(
    prices: pd.DataFrame, cutoff: pd.Timestamp, columns: tuple[str, ...] = ("adj_close",), seed: int = 0
) -> pd.DataFrame:
    """A copy of ``prices`` whose ``columns`` are each multiplied, on every row dated after ``cutoff``,
    by a random factor in [0.2, 5) (one seeded generator, column by column): a wildly different
    future, so a point-in-time check that compares the past before and after can fail."""
    scrambled = prices.copy()
    future = scrambled["date"] > cutoff
    rng = np.random.default_rng(seed)
    for col in columns:
        scrambled.loc[future, col] *= rng.uniform(0.2, 5.0, future.sum())
    return scrambled
