"""KServe model of the allocator: target weights for the request's tickers, from the champion pyfunc.

The request names its tickers (``ticker``, BYTES), their ``allocator_v1`` features (FP64; a missing
feature input is an all-NaN column, since features may be missing online) and optionally the book
held now (``current_weight``, FP64; null or absent = not held). The server checks what it can name
precisely before the pyfunc runs (more tickers than a fixed-width policy's slots, or tickers
outside an older fixed-universe policy's trained universe, repeated tickers, a book that is not
long-only), so every refusal is a 400 with a clear reason; a ``ValueError`` the pyfunc
raises on its own inputs is a 400 with its message too. An answer of the wrong shape is the
registered model's fault: a 500.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

import numpy as np
import pandas as pd

from feature_repo.contract import ALLOCATOR_INPUTS, CURRENT_WEIGHT_INPUT, TICKER_INPUT, WEIGHT_OUTPUT, ErrorCode
from feature_repo.schema import ALLOCATOR_FEATURES
from serving.errors import BadRequest, ModelLoadError
from serving.loaders import LoadedAllocator
from serving.model_base import ChampionModel
from serving.tensors import Columns, check_columns

# The pyfunc's own tolerance on "sums to at most 1" (float sums of a client's book).
BOOK_TOLERANCE: Final = 1e-6
_SHOWN: Final = 20  # tickers named in a refusal; the count says how many more there are


def _named(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown if len(items) <= _SHOWN else f"{shown} (+{len(items) - _SHOWN} more)"


def checked_tickers(loaded: LoadedAllocator, columns: Columns) -> list[str]:
    """The request's tickers, each once, and within what the policy serves.

    A fixed-width policy (``max_assets``) serves any set of at most that many tickers; an older
    fixed-universe policy serves any subset of its trained universe.

    Raises:
        BadRequest: no ``ticker`` input, more tickers than a fixed-width policy's slots, a ticker
            outside a fixed-universe policy's trained universe, or a repeated ticker.
    """
    if TICKER_INPUT not in columns:
        raise BadRequest(f"missing input '{TICKER_INPUT}' (BYTES [n], one ticker per row)")
    tickers = [str(t) for t in columns[TICKER_INPUT]]
    if loaded.max_assets is not None and len(tickers) > loaded.max_assets:
        raise BadRequest(
            f"the allocator serves at most {loaded.max_assets} tickers per request (its policy's width), "
            f"got {len(tickers)}"
        )
    outside = [] if loaded.max_assets is not None else [t for t in dict.fromkeys(tickers) if t not in loaded.tickers]
    if outside:
        raise BadRequest(
            f"outside the allocator's trained universe of {len(loaded.tickers)} tickers: {_named(outside)}",
            code=ErrorCode.OUTSIDE_UNIVERSE,
        )
    repeated = sorted({t for t in tickers if tickers.count(t) > 1})
    if repeated:
        raise BadRequest(f"tickers appear more than once: {_named(repeated)}")
    return tickers


def checked_book(columns: Columns, rows: int) -> np.ndarray:
    """The weights held now (null or absent = 0), long-only and summing to at most 1.

    Raises:
        BadRequest: a weight below 0, above 1 or not finite, or a total above 1.
    """
    values = columns.get(CURRENT_WEIGHT_INPUT)
    if values is None:
        return np.zeros(rows)
    held = np.where(np.isnan(values), 0.0, values)
    bad = np.flatnonzero(~np.isfinite(held) | (held < 0.0) | (held > 1.0))
    if bad.size:
        shown = ", ".join(f"row {i}: {values[i]:g}" for i in bad[:5])
        raise BadRequest(f"{CURRENT_WEIGHT_INPUT} must be in [0, 1], a long-only book ({shown})")
    total = float(held.sum())
    if total > 1.0 + BOOK_TOLERANCE:
        raise BadRequest(f"{CURRENT_WEIGHT_INPUT} sums to {total:.6g}; a long-only book sums to at most 1")
    return held


def _weights(result: Any, tickers: list[str], version: str) -> np.ndarray:
    frame = result if isinstance(result, pd.DataFrame) else pd.DataFrame(result)
    if WEIGHT_OUTPUT not in frame.columns or len(frame) != len(tickers):
        raise ModelLoadError(
            f"allocator version {version} returned columns {list(frame.columns)} x {len(frame)} rows; "
            f"expected '{WEIGHT_OUTPUT}' x {len(tickers)}"
        )
    if TICKER_INPUT in frame.columns and [str(t) for t in frame[TICKER_INPUT]] != tickers:
        raise ModelLoadError(f"allocator version {version} answered in another row order than the request's")
    return frame[WEIGHT_OUTPUT].to_numpy(dtype=np.float64)


class AllocatorModel(ChampionModel[LoadedAllocator]):
    """``weight`` per ticker of the request (cash is ``1 - sum``), in the request's row order."""

    text_inputs: ClassVar[frozenset[str]] = frozenset({TICKER_INPUT})

    def compute(self, loaded: LoadedAllocator, columns: Columns) -> tuple[int, dict[str, np.ndarray]]:
        """Check the tickers and the book, then run the pyfunc (absent features as NaN columns)."""
        rows = check_columns(columns, ALLOCATOR_INPUTS, require_all=False)
        tickers = checked_tickers(loaded, columns)
        book = checked_book(columns, rows)
        if rows == 0:
            return 0, {WEIGHT_OUTPUT: np.empty(0)}
        frame = pd.DataFrame(
            {
                TICKER_INPUT: pd.Series(tickers, dtype=object),
                **{name: columns.get(name, np.full(rows, np.nan)) for name in ALLOCATOR_FEATURES},
                CURRENT_WEIGHT_INPUT: book,
            }
        )
        try:
            result = loaded.model.predict(frame)
        except ValueError as e:  # the pyfunc's refusal of its inputs (documented as ValueError)
            raise BadRequest(f"the allocator refused the request: {e}") from e
        return rows, {WEIGHT_OUTPUT: _weights(result, tickers, loaded.version)}
