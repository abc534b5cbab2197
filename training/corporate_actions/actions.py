"""The corporate-actions file a user brings: one CSV, one action per line.

Format (header required, column order free, other named columns ignored so the suspects report
loads as an actions file too)::

    ticker,ex_date,kind,ratio,amount
    BHP,2001-07-02,split,2,
    AAA,2010-05-17,consolidation,0.1,
    CCC,2012-03-01,bonus_issue,1.1,
    DDD,2014-11-20,capital_return,,0.25
    EEE,2007-11-05,demerger,0.94,
    FFF,2013-02-25,special_dividend,,1.5
    GGG,2013-03-01,dividend,,0.42

Conventions (the ratio is always *shares held after per share held before*):

* ``split`` 2:1 is ``ratio`` 2; ``consolidation`` 1:10 is ``ratio`` 0.1; a 1-for-10 ``bonus_issue``
  (one new share for every ten held) is ``ratio`` 1.1. Price factor ``1/ratio``, volume factor ``ratio``.
* ``capital_return``, ``special_dividend``, ``dividend``: ``amount`` is cash per share in the price's
  currency. Price factor ``(close_before - amount) / close_before`` on the last raw close before the
  ex-date; volume factor 1.
* ``demerger``: either ``amount``, the value per parent share of what was demerged (factor as for
  cash), or ``ratio``, the share of the parent's value it keeps (0 < ratio < 1, e.g. the cost-base
  apportionment the company publishes), which is the price factor itself.

``ex_date`` is ``YYYY-MM-DD`` or ``YYYYMMDD``: the first session that trades without the entitlement.
Every problem is reported at once, naming file, line and field; nothing is loaded from a bad file.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final, cast

import pandas as pd

from feature_repo.tables import CORPORATE_ACTION_KINDS, DATE, TICKER
from training.errors import IngestError, InputProblem

__all__ = ["ACTION_FILE_COLUMNS", "RATIO_KINDS", "actions_frame", "load_actions"]

ACTION_FILE_COLUMNS: Final[tuple[str, ...]] = ("ticker", "ex_date", "kind", "ratio", "amount")
RATIO_KINDS: Final[frozenset[str]] = frozenset({"split", "consolidation", "bonus_issue"})
CASH_KINDS: Final[frozenset[str]] = frozenset({"capital_return", "special_dividend", "dividend"})
# Columns of the frame the loader returns: the action, plus where it came from for later errors.
FRAME_COLUMNS: Final[tuple[str, ...]] = (TICKER, DATE, "kind", "ratio", "amount", "file", "line")
_DATE: Final = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")
_MISSING: Final[frozenset[str]] = frozenset({"", "nan", "na", "n/a", "null", "none"})


def load_actions(path: Path) -> pd.DataFrame:
    """Read and validate an actions file.

    Returns:
        One row per action in :data:`FRAME_COLUMNS`: ``date`` is the ex-date (``datetime64[ns]``),
        ``ratio``/``amount`` are NaN where not given, ``file``/``line`` locate the row.

    Raises:
        IngestError: the file cannot be read, lacks a column, or has malformed rows; every problem
            names the file, the line (header = line 1) and the field.
    """
    name = str(path)
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as handle:
            lines = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise IngestError([InputProblem(name, None, None, f"cannot read corporate-actions file: {e}")]) from e
    return actions_frame(lines, name)


def actions_frame(lines: list[list[str]], name: str) -> pd.DataFrame:
    """Validate parsed CSV lines (header first) into the actions frame; see :func:`load_actions`."""
    if not lines:
        expected = ",".join(ACTION_FILE_COLUMNS)
        raise IngestError([InputProblem(name, None, None, f"empty file; expected the header {expected}")])
    header = [h.strip().lower() for h in lines[0]]
    missing = [c for c in ACTION_FILE_COLUMNS if c not in header]
    if missing:
        raise IngestError([InputProblem(name, 1, c, "column missing from the header") for c in missing])
    pos = {c: header.index(c) for c in ACTION_FILE_COLUMNS}
    rows: list[dict[str, object]] = []
    problems: list[InputProblem] = []
    seen: dict[tuple[str, pd.Timestamp, str], int] = {}
    for number, fields in enumerate(lines[1:], start=2):
        if not any(f.strip() for f in fields) or fields[0].lstrip().startswith("#"):
            continue
        if len(fields) > len(header):
            problems.append(InputProblem(name, number, None, f"{len(fields)} fields, the header has {len(header)}"))
            continue
        # Missing trailing fields are empty: "AAA,2010-05-17,consolidation,0.1" needs no amount column.
        padded = fields + [""] * (len(header) - len(fields))
        row, found = _row(name, number, {c: padded[i].strip() for c, i in pos.items()})
        problems.extend(found)
        if found:
            continue
        key = (str(row[TICKER]), cast(pd.Timestamp, row[DATE]), str(row["kind"]))
        if key in seen:
            problems.append(InputProblem(name, number, "ex_date", f"same ticker, ex_date and kind as line {seen[key]}"))
            continue
        seen[key] = number
        rows.append(row)
    if problems:
        raise IngestError(problems)
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    frame[DATE] = pd.to_datetime(frame[DATE]).astype("datetime64[ns]")
    for col in ("ratio", "amount"):
        frame[col] = frame[col].astype("float64")
    frame["line"] = frame["line"].astype("int64")
    return frame.sort_values([TICKER, DATE, "kind"], kind="stable").reset_index(drop=True)


def _row(name: str, line: int, cell: dict[str, str]) -> tuple[dict[str, object], list[InputProblem]]:
    """One validated row, or the problems that stop it."""
    problems: list[InputProblem] = []

    def bad(field: str, message: str) -> None:
        problems.append(InputProblem(name, line, field, message))

    ticker = cell["ticker"].upper()
    if not ticker:
        bad("ticker", "empty")
    day = _date(cell["ex_date"])
    if day is None:
        bad("ex_date", f"'{cell['ex_date']}' is not a date (YYYY-MM-DD or YYYYMMDD)")
    kind = re.sub(r"[\s-]+", "_", cell["kind"].lower())
    if kind not in CORPORATE_ACTION_KINDS:
        bad("kind", f"'{cell['kind']}' is not one of {', '.join(CORPORATE_ACTION_KINDS)}")
    ratio, amount = _number(cell["ratio"], "ratio", bad), _number(cell["amount"], "amount", bad)
    if not problems:
        for field, message in _kind_rules(kind, ratio, amount):
            bad(field, message)
    row: dict[str, object] = {
        TICKER: ticker,
        DATE: day,
        "kind": kind,
        "ratio": math.nan if ratio is None else ratio,
        "amount": math.nan if amount is None else amount,
        "file": name,
        "line": line,
    }
    return row, problems


def _kind_rules(kind: str, ratio: float | None, amount: float | None) -> Iterable[tuple[str, str]]:
    """What each kind needs (see the module docstring); yields (field, problem)."""
    if kind in RATIO_KINDS:
        if amount is not None:
            yield "amount", f"a {kind} takes a ratio, not an amount"
        if ratio is None:
            yield "ratio", f"a {kind} needs a ratio (shares after per share before)"
        elif kind == "consolidation" and not 0 < ratio < 1:
            yield "ratio", f"{ratio:g}: a consolidation ratio is below 1 (1:10 is 0.1, shares after per share before)"
        elif kind != "consolidation" and ratio <= 1:
            example = "2:1 is 2" if kind == "split" else "one new share per ten held is 1.1"
            yield "ratio", f"{ratio:g}: a {kind} ratio is above 1 ({example}, shares after per share before)"
    elif kind in CASH_KINDS:
        if ratio is not None:
            yield "ratio", f"a {kind} takes an amount (cash per share), not a ratio"
        if amount is None or amount <= 0:
            yield "amount", f"a {kind} needs a positive amount (cash per share)"
    elif (ratio is None) == (amount is None):
        yield "ratio", "a demerger takes either a ratio (share of value the parent keeps) or an amount, not both"
    elif ratio is not None and not 0 < ratio < 1:
        yield "ratio", f"{ratio:g}: a demerger ratio is the share of value the parent keeps, between 0 and 1"
    elif amount is not None and amount <= 0:
        yield "amount", "a demerger amount (value demerged per share) must be positive"


def _number(text: str, field: str, bad: Callable[[str, str], None]) -> float | None:
    if text.lower() in _MISSING:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        bad(field, f"'{text}' is not a number")
        return None
    return value


def _date(text: str) -> pd.Timestamp | None:
    match = _DATE.match(text)
    if not match:
        return None
    try:
        return pd.Timestamp(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None
