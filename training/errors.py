"""The one exception root of the training package and its specialisations."""

from __future__ import annotations

from dataclasses import dataclass


class TrainingError(Exception):
    """Root of every error the training package raises on purpose."""


@dataclass(frozen=True)
class InputProblem:
    """One problem found in user input, located precisely enough to fix it.

    Attributes:
        file: the file (or source name) the problem is in.
        row: 1-based line number in the file as a person sees it (the header is
            line 1 in a CSV), or the 1-based record number for Parquet/JSON;
            ``None`` when the problem concerns the whole file.
        column: the column (field) at fault, or ``None`` when it is the whole row.
        message: what is wrong, in words.
    """

    file: str
    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.column is not None:
            where += f", column '{self.column}'"
        return f"{where}: {self.message}"


class IngestError(TrainingError):
    """Input could not be ingested; nothing was written. Carries every problem found."""

    def __init__(self, problems: list[InputProblem], max_shown: int = 20) -> None:
        self.problems = problems
        shown = "\n  ".join(str(p) for p in problems[:max_shown])
        more = len(problems) - max_shown
        suffix = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{len(problems)} problem(s) in input:\n  {shown}{suffix}")


class DataSourceError(TrainingError):
    """A remote data source failed (after retries) or answered in an unexpected format."""


class StoreError(TrainingError):
    """The offline store refused a write; the store is left as it was."""


class HealthCheckFailed(TrainingError):
    """Data health checks crossed a configured threshold."""
