"""What an import of per-day vendor files counted, tolerated and skipped, for the ingest summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

__all__ = ["SHOWN", "EodReport"]

# Rows (or files) named in each note of the report; the counts cover all of them.
SHOWN: Final = 5


@dataclass(frozen=True)
class EodReport:
    """What the import found, for the ingest stage's summary (counts, and a few examples each)."""

    files_read: int = 0
    empty_files: int = 0
    duplicate_files: int = 0
    files_without_date: int = 0
    rows_kept: int = 0
    rows_skipped_by_code_rule: int = 0
    index_rows: int = 0
    halt_rows: int = 0
    partial_zero_rows: int = 0
    no_close_rows: int = 0
    bracket_rows: int = 0
    index_bracket_rows: int = 0
    examples: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The summary the ingest stage prints, one line per fact worth a line."""
        out = [
            f"eod files: {self.files_read:,} read, {self.empty_files:,} empty, {self.duplicate_files:,} duplicate; "
            f"rows: {self.rows_kept:,} kept, {self.rows_skipped_by_code_rule:,} skipped by the code rule, "
            f"{self.index_rows:,} index, {self.halt_rows:,} halt"
        ]
        notes = (
            ("empty", self.empty_files, "empty file(s) (holidays or days without data), skipped"),
            ("duplicate", self.duplicate_files, "file(s) repeating another file's day with the same rows, skipped"),
            ("undated", self.files_without_date, "file(s) without a date in the name: their rows' date is used"),
            ("halt", self.halt_rows, "trading-halt row(s) (open/high/low 0): close kept, open/high/low missing"),
            ("partial", self.partial_zero_rows, "row(s) with some of open/high/low 0: those set missing"),
            ("no_close", self.no_close_rows, "row(s) with a zero close (no price that day), skipped"),
            ("bracket", self.bracket_rows, "share bar(s) outside their own range, kept as delivered"),
            ("index_bracket", self.index_bracket_rows, "index bar(s) outside their own range (only the close is used)"),
        )
        for key, count, text in notes:
            if not count:
                continue
            line = f"note: {count:,} {text}"
            shown = self.examples.get(key, ())
            if shown:
                line += ": " + "; ".join(shown) + (" ..." if count > len(shown) else "")
            out.append(line)
        return out
