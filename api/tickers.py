"""Ticker list parsing shared by the routes."""

from __future__ import annotations

import re
from typing import Final

from api.errors import InvalidRequestError

TICKER_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,14}$"
_TICKER: Final = re.compile(TICKER_PATTERN)


def parse_tickers(raw: str, limit: int) -> list[str]:
    """``"aapl, MSFT,AAPL"`` -> ``["AAPL", "MSFT"]`` (upper case, order kept, duplicates dropped).

    Raises:
        InvalidRequestError: an empty list, a malformed ticker, or more than ``limit`` tickers.
    """
    tickers = list(dict.fromkeys(t.strip().upper() for t in raw.split(",") if t.strip()))
    check_tickers(tickers, limit)
    return tickers


def check_tickers(tickers: list[str], limit: int) -> None:
    """Raise :class:`InvalidRequestError` unless 1..limit well-formed tickers."""
    if not tickers:
        raise InvalidRequestError("no tickers given")
    if len(tickers) > limit:
        raise InvalidRequestError(f"at most {limit} tickers per request (max_tickers); got {len(tickers)}")
    bad = [t for t in tickers if not _TICKER.match(t)]
    if bad:
        raise InvalidRequestError(f"malformed tickers: {', '.join(bad[:10])}")
