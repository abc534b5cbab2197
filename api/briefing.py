"""The daily briefing's stored facts, read from the files the monitoring job writes (see :mod:`feature_repo.briefing`).

The gateway reads the index (the sessions covered: the bounds a date must fall within) and one
session's facts file, both small JSON, each re-read only when its file changed. No model, no
scikit-learn, no computation beyond choosing the session: the numbers were fixed when stored.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from api.errors import GatewayError, InvalidRequestError
from feature_repo.briefing import BriefingFacts, BriefingIndex, facts_file, index_file

MAX_CACHED: Final = 64
# A day that is not a session gets the briefing of the session before it, at most this many days
# earlier (a weekend plus a holiday); further back, facts are missing, not a market holiday.
MAX_GAP_DAYS: Final = 4


class BriefingUnavailableError(GatewayError):
    """No briefing facts are stored (the monitoring job has not run) or a stored file is unreadable."""

    status_code = 503
    code = "briefing_unavailable"


@dataclass(frozen=True)
class StoredFacts:
    """One session's facts and the sha256 of the file they were read from (for the audit trail)."""

    facts: BriefingFacts
    digest: str


class BriefingStore:
    """Reads ``<data>/reports/briefing/``: the index and per-session facts, cached by file mtime."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._index: tuple[float, BriefingIndex] | None = None
        self._facts: dict[dt.date, tuple[float, StoredFacts]] = {}

    def index(self) -> BriefingIndex:
        """The sessions with facts (blocking).

        Raises:
            BriefingUnavailableError: no index, or an unreadable one.
        """
        path = index_file(self.data_dir)
        mtime = _mtime(path)
        cached = self._index
        if cached is not None and cached[0] == mtime:
            return cached[1]
        try:
            index = BriefingIndex.model_validate_json(_read(path))
        except ValidationError as e:
            raise BriefingUnavailableError("the briefing index is unreadable") from e
        with self._lock:
            self._index = (mtime, index)
        return index

    def session_for(self, day: dt.date | None) -> tuple[BriefingIndex, dt.date]:
        """The session a request for ``day`` describes: the last one on or before it (default: the last).

        Raises:
            InvalidRequestError: ``day`` before the first or after the last session (the message names it),
                or more than ``MAX_GAP_DAYS`` after the last session with facts before it.
            BriefingUnavailableError: nothing is stored.
        """
        index = self.index()
        if day is None:
            return index, index.last
        if day < index.first:
            raise InvalidRequestError(f"date {day} is before the first briefing session, {index.first}")
        if day > index.last:
            raise InvalidRequestError(f"date {day} is after the last briefing session, {index.last}")
        sessions = sorted(index.sessions)
        position = bisect.bisect_right(sessions, day)
        before = sessions[position - 1]
        if (day - before).days > MAX_GAP_DAYS:
            # A session whose facts were never written (the job covers the newest sessions by
            # default): an older briefing would pass for that day's.
            after = sessions[position] if position < len(sessions) else None
            raise InvalidRequestError(
                f"no briefing is stored for {day}: the nearest sessions with one are {before}"
                + (f" and {after}" if after else "")
            )
        return index, before

    def facts(self, session: dt.date) -> StoredFacts:
        """The stored facts of ``session`` (blocking).

        Raises:
            BriefingUnavailableError: the file is missing or unreadable.
        """
        path = facts_file(self.data_dir, session)
        mtime = _mtime(path)
        cached = self._facts.get(session)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        raw = _read(path)
        try:
            stored = StoredFacts(BriefingFacts.model_validate_json(raw), hashlib.sha256(raw).hexdigest())
        except ValidationError as e:
            raise BriefingUnavailableError(f"the briefing facts of {session} are unreadable") from e
        with self._lock:
            if len(self._facts) >= MAX_CACHED:
                self._facts.clear()
            self._facts[session] = (mtime, stored)
        return stored


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError as e:
        raise BriefingUnavailableError(
            "no briefing facts are stored: run `python -m monitoring briefing-facts` after the pipeline"
        ) from e


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise BriefingUnavailableError(f"briefing facts unreadable: {type(e).__name__}") from e
