"""What ``POST /v1/allocations`` allocates across, from a schema-valid request: every such request is accepted.

JSON Schema cannot say "unique ignoring letter case", "keys within the universe" or "values summing
to at most 1", so the route does not refuse on them (a schema-valid request must be answered):
duplicates are allocated once, a held ticker outside the universe is taken as sold, and a book
above 1 is scaled down; each adjustment is named in the answer's ``reasons``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Final

from api.schemas import BOOK_TOLERANCE, AllocationRequest, DegradedReason

NOTE_MODEL: Final = "request"
SHOWN: Final = 10  # tickers named in a note


@dataclass(frozen=True)
class AllocationInputs:
    """The distinct universe (first-seen order), the book on it, and the notes on what was adjusted."""

    universe: list[str]
    book: dict[str, float]
    notes: list[DegradedReason]


def _named(tickers: list[str]) -> str:
    more = f" (+{len(tickers) - SHOWN} more)" if len(tickers) > SHOWN else ""
    return ", ".join(tickers[:SHOWN]) + more


def _note(code: str, message: str) -> DegradedReason:
    return DegradedReason(model=NOTE_MODEL, code=code, message=message)


def allocation_inputs(body: AllocationRequest) -> AllocationInputs:
    """The universe without duplicates and the held book merged, restricted and scaled (see the module)."""
    universe = list(dict.fromkeys(body.universe))  # tickers are upper-cased by the schema
    notes = []
    repeated = [t for t, n in Counter(body.universe).items() if n > 1]
    if repeated:
        notes.append(_note("duplicate_tickers", f"universe named {_named(repeated)} more than once; allocated once"))
    merged: dict[str, float] = {}
    for ticker, weight in body.current_weights.items():
        merged[ticker.upper()] = merged.get(ticker.upper(), 0.0) + weight
    total = math.fsum(merged.values())
    if total > 1.0 + BOOK_TOLERANCE:
        merged = {t: w / total for t, w in merged.items()}
        notes.append(_note("book_scaled", f"current_weights sum to {total:.6g}; scaled to sum to 1 (a long-only book)"))
    members = set(universe)
    outside = [t for t in merged if t not in members]
    if outside:
        notes.append(
            _note(
                "book_outside_universe",
                f"current_weights holds {_named(outside)} outside the universe: taken as sold (weight 0)",
            )
        )
    book = {t: w for t, w in merged.items() if t in members}
    return AllocationInputs(universe=universe, book=book, notes=notes)
