"""Tickers as the API spells them: one pattern, declared in the OpenAPI and enforced by the routes."""

from __future__ import annotations

import re
from typing import Final

from api.errors import InvalidRequestError

# One ticker: a letter or digit, then up to 14 letters, digits, dots or dashes (BRK.B, RDS-A).
TICKER: Final = r"[A-Za-z0-9][A-Za-z0-9.\-]{0,14}"
TICKER_PATTERN: Final = rf"^{TICKER}$"
_TICKER: Final = re.compile(TICKER)
# Comma-joined tickers in one match: a comma is outside the ticker class, so this never backtracks.
_TICKER_LIST: Final = re.compile(rf"{TICKER}(?:,{TICKER})*")
# Most characters the ``tickers`` query parameter may hold (declared as its maxLength): 4 KiB, or
# room for ``max_tickers`` tickers of 15 characters and their commas when that is more.
TICKERS_QUERY_MAX_LENGTH: Final = 4096
TICKER_WITH_COMMA: Final = 16


def tickers_query_max_length(limit: int) -> int:
    """The ``tickers`` query parameter's maxLength for ``limit`` tickers per request."""
    return max(TICKERS_QUERY_MAX_LENGTH, limit * TICKER_WITH_COMMA)


def tickers_query_pattern(limit: int) -> str:
    """The ``tickers`` query parameter as a JSON-Schema (ECMA-262) pattern: 1..``limit`` tickers.

    Tickers are separated by commas; spaces around a ticker and empty entries (``A,,B,``) are
    allowed. :func:`parse_tickers` accepts exactly the strings this pattern matches; it does not
    run it (nested stars on a 4 KiB string backtrack quadratically in Python's ``re``).
    """
    return rf"^[ ,]*{TICKER}(?: *,[ ,]*{TICKER}){{0,{limit - 1}}}[ ,]*$"


def parse_tickers(raw: str, limit: int) -> list[str]:
    """``"aapl, MSFT,AAPL"`` -> ``["AAPL", "MSFT"]`` (upper case, order kept, duplicates dropped).

    Raises:
        InvalidRequestError: no ticker, a malformed entry, or more than ``limit`` tickers named
            (duplicates count: the limit is on what the request names, as the pattern declares).
    """
    if len(raw) > tickers_query_max_length(limit):
        raise InvalidRequestError(f"tickers holds {len(raw)} characters; at most {tickers_query_max_length(limit)}")
    named = [entry.strip(" ") for entry in raw.split(",")]
    named = [entry for entry in named if entry]
    check_tickers(named, limit)
    return list(dict.fromkeys(t.upper() for t in named))


def check_tickers(tickers: list[str], limit: int) -> None:
    """Raise :class:`InvalidRequestError` unless 1..limit well-formed tickers."""
    if not tickers:
        raise InvalidRequestError("no tickers given")
    if len(tickers) > limit:
        raise InvalidRequestError(f"at most {limit} tickers per request (max_tickers); got {len(tickers)}")
    if _TICKER_LIST.fullmatch(",".join(tickers)):  # one match for the list; each entry only to name the bad
        return
    bad = [t for t in tickers if not _TICKER.fullmatch(t)]
    if bad:
        shown = ", ".join(t if len(t) <= 20 else f"{t[:20]}..." for t in bad[:10])
        raise InvalidRequestError(f"malformed tickers: {shown}")
