"""An append-only, hash-chained audit log of registry decisions (registrations, promotions, rollbacks).

Each line is one JSON record carrying the SHA-256 of the previous line's record (``prev``) and its
own (``hash``, over the canonical JSON of everything else). The code only ever appends; an edited,
removed or reordered line breaks the chain, which :meth:`AuditLog.verify` reports by line number.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from training.errors import TrainingError

GENESIS: Final = "0" * 64


class AuditLogCorrupt(TrainingError):
    """The audit log's hash chain is broken: a line was edited, removed or reordered."""


def _digest(record: dict[str, Any]) -> str:
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class AuditLog:
    """Append-only JSON-lines file of registry events."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record, oldest first."""
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)

    def last_hash(self) -> str:
        last = GENESIS
        for record in self.records():
            last = record["hash"]
        return last

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event (``registered``, ``promoted``, ``kept_champion``, ``rolled_back``...)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"time": datetime.now(UTC).isoformat(), "event": event, **fields, "prev": self.last_hash()}
        record = {**body, "hash": _digest(body)}
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        # One write of one line in append mode, flushed to disk before the caller goes on.
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        return record

    def verify(self) -> int:
        """Check the chain; return the number of records.

        Raises:
            AuditLogCorrupt: naming the first line whose record or link does not match.
        """
        prev = GENESIS
        count = 0
        for number, record in enumerate(self.records(), start=1):
            body = {k: v for k, v in record.items() if k != "hash"}
            if body.get("prev") != prev:
                raise AuditLogCorrupt(f"{self.path}: line {number} does not follow line {number - 1} (chain broken)")
            if _digest(body) != record.get("hash"):
                raise AuditLogCorrupt(f"{self.path}: line {number} was altered (its hash does not match)")
            prev = record["hash"]
            count = number
        return count

    def last(self, event: str, model: str) -> dict[str, Any] | None:
        """The newest record of ``event`` for ``model``."""
        found = None
        for record in self.records():
            if record.get("event") == event and record.get("model") == model:
                found = record
        return found
