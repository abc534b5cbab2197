"""Labelled sentences: the project's own set and loaders for the formats users bring.

Every corpus becomes one frame with columns ``sentence``, ``label`` (``negative``/``neutral``/
``positive``), ``family`` (the group that must stay on one side of the train/validation split),
``topic`` and ``source`` (``file:line``). Formats:

- the project's set: ``training/sentiment/labelled/sentences_*.csv`` with ``sentence,label,family,topic``
  (sentences written for this project; see that folder's README);
- a ``sentence,label`` CSV (header names ``sentence``/``text`` and ``label``/``sentiment``; an optional
  ``family``/``group`` column keeps paraphrases together), or the same two columns without a header
  in either order (as in the widely shared ``all-data.csv`` of Financial PhraseBank);
- Financial PhraseBank's ``Sentences_*.txt``: one ``sentence@label`` per line, ISO-8859-1.

A user's sentence without a family is its own family, so their split is a plain random one. Any bad
line (empty sentence, unknown label, the same sentence with two labels) is reported with its file
and line and the corpus is refused: training on silently dropped rows would hide the problem.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pandas as pd

from training.errors import InputProblem, TrainingError
from training.sentiment import LABELS

PROJECT_DATA: Final = Path(__file__).parent / "labelled"
COLUMNS: Final = ("sentence", "label", "family", "topic", "source")
# Words only: numeric codes differ between copies of the same corpus (-1/0/1 vs 0/1/2), so they are refused.
_LABEL_ALIASES: Final = {"neg": "negative", "pos": "positive", "neu": "neutral"}
_SENTENCE_HEADERS: Final = ("sentence", "text")
_LABEL_HEADERS: Final = ("label", "sentiment")
_FAMILY_HEADERS: Final = ("family", "group")


class CorpusError(TrainingError):
    """A labelled corpus could not be used; carries every problem found."""

    def __init__(self, problems: Sequence[InputProblem], max_shown: int = 20) -> None:
        self.problems = list(problems)
        shown = "\n  ".join(str(p) for p in self.problems[:max_shown])
        more = len(self.problems) - max_shown
        suffix = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{len(self.problems)} problem(s) in the labelled corpus:\n  {shown}{suffix}")


@dataclass(frozen=True)
class Corpus:
    """Labelled sentences in :data:`COLUMNS`, and where they came from, in words."""

    frame: pd.DataFrame
    description: str

    def label_counts(self) -> dict[str, int]:
        counts = self.frame["label"].value_counts()
        return {label: int(counts.get(label, 0)) for label in LABELS}


def normalise_label(value: str) -> str | None:
    """``negative``/``neutral``/``positive`` from a label as written (case, spaces, short forms); else None."""
    text = value.strip().lower()
    text = _LABEL_ALIASES.get(text, text)
    return text if text in LABELS else None


def load_project_corpus(folder: Path = PROJECT_DATA) -> Corpus:
    """The project's labelled set: every ``sentences_*.csv`` of ``folder``, concatenated.

    Raises:
        CorpusError: no file, or any bad line (each named by file and line).
    """
    files = sorted(folder.glob("sentences_*.csv"))
    if not files:
        raise CorpusError([InputProblem(str(folder), None, None, "no sentences_*.csv file")])
    frames, problems = [], []
    for path in files:
        frame, found = _read_csv(path, require_family=True)
        frames.append(frame)
        problems.extend(found)
    return _finish(frames, problems, f"project set ({len(files)} files, written for Portfolio OS)")


def load_labelled(paths: Iterable[Path]) -> Corpus:
    """A user's corpus from ``sentence,label`` CSV files and/or PhraseBank ``.txt`` files.

    Raises:
        CorpusError: an unreadable file, an unknown format, or any bad line.
    """
    frames, problems, names = [], [], []
    for path in paths:
        names.append(path.name)
        if not path.is_file():
            problems.append(InputProblem(str(path), None, None, "no such file"))
            continue
        if path.suffix.lower() == ".txt":
            frame, found = _read_phrasebank(path)
        elif path.suffix.lower() == ".csv":
            frame, found = _read_csv(path, require_family=False)
        else:
            found = [InputProblem(str(path), None, None, "expected .csv (sentence,label) or .txt (sentence@label)")]
            frame = pd.DataFrame(columns=list(COLUMNS))
        frames.append(frame)
        problems.extend(found)
    if not names:
        raise CorpusError([InputProblem("corpus", None, None, "no file given")])
    return _finish(frames, problems, f"user corpus ({', '.join(names)})")


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Financial PhraseBank and copies of it are ISO-8859-1; every byte decodes, so nothing is lost.
        return raw.decode("latin-1")


def _read_phrasebank(path: Path) -> tuple[pd.DataFrame, list[InputProblem]]:
    rows, problems = [], []
    for line_no, line in enumerate(_decode(path).splitlines(), start=1):
        if not line.strip():
            continue
        sentence, at, raw_label = line.rstrip().rpartition("@")
        if not at:
            problems.append(InputProblem(str(path), line_no, None, "expected 'sentence@label'"))
            continue
        rows.append(_row(path, line_no, sentence, raw_label, family=None, topic=None, problems=problems))
    return _frame(rows), problems


def _read_csv(path: Path, *, require_family: bool) -> tuple[pd.DataFrame, list[InputProblem]]:
    records = list(csv.reader(io.StringIO(_decode(path))))
    if not records:
        return _frame([]), [InputProblem(str(path), None, None, "the file is empty")]
    header = [h.strip().lower() for h in records[0]]
    columns = _header_columns(header)
    body_start = 2
    if columns is None:
        columns = _headerless_columns(records)
        body_start = 1
    if columns is None:
        message = "expected a header with sentence/text and label/sentiment, or two columns (sentence, label)"
        return _frame([]), [InputProblem(str(path), 1, None, message)]
    sentence_at, label_at, family_at, topic_at = columns
    if require_family and family_at is None:
        return _frame([]), [InputProblem(str(path), 1, "family", "the project's set needs a family column")]
    rows, problems = [], []
    for line_no, record in enumerate(records[body_start - 1 :], start=body_start):
        if not any(cell.strip() for cell in record):
            continue
        if len(record) <= max(sentence_at, label_at):
            problems.append(InputProblem(str(path), line_no, None, f"expected at least {len(header)} fields"))
            continue
        family = record[family_at].strip() if family_at is not None and family_at < len(record) else None
        topic = record[topic_at].strip() if topic_at is not None and topic_at < len(record) else None
        rows.append(
            _row(path, line_no, record[sentence_at], record[label_at], family=family, topic=topic, problems=problems)
        )
    return _frame(rows), problems


def _header_columns(header: list[str]) -> tuple[int, int, int | None, int | None] | None:
    def find(names: Sequence[str]) -> int | None:
        return next((header.index(n) for n in names if n in header), None)

    sentence_at, label_at = find(_SENTENCE_HEADERS), find(_LABEL_HEADERS)
    if sentence_at is None or label_at is None:
        return None
    return sentence_at, label_at, find(_FAMILY_HEADERS), find(("topic",))


def _headerless_columns(records: list[list[str]]) -> tuple[int, int, None, None] | None:
    """Two columns without a header: the one whose values are mostly labels is the label column.

    "Mostly", not "all": one mistyped label must be reported on its own line, not make the file unreadable.
    """
    filled = [r for r in records if any(c.strip() for c in r)]
    if not filled or any(len(r) != 2 for r in filled):
        return None
    for label_at in (0, 1):
        if sum(normalise_label(r[label_at]) is not None for r in filled) > len(filled) / 2:
            return 1 - label_at, label_at, None, None
    return None


def _row(
    path: Path,
    line_no: int,
    sentence: str,
    raw_label: str,
    *,
    family: str | None,
    topic: str | None,
    problems: list[InputProblem],
) -> dict[str, str] | None:
    text = " ".join(sentence.split())
    label = normalise_label(raw_label)
    if not text:
        problems.append(InputProblem(str(path), line_no, "sentence", "the sentence is empty"))
        return None
    if label is None:
        problems.append(
            InputProblem(str(path), line_no, "label", f"unknown label {raw_label.strip()!r}; expected one of {LABELS}")
        )
        return None
    if family is not None and not family:
        problems.append(InputProblem(str(path), line_no, "family", "the family is empty"))
        return None
    source = f"{path.name}:{line_no}"
    return {"sentence": text, "label": label, "family": family or source, "topic": topic or "", "source": source}


def _frame(rows: Iterable[dict[str, str] | None]) -> pd.DataFrame:
    kept = [r for r in rows if r is not None]
    return pd.DataFrame(kept, columns=list(COLUMNS)).astype(str)


def _finish(frames: list[pd.DataFrame], problems: list[InputProblem], description: str) -> Corpus:
    frame = pd.concat(frames, ignore_index=True) if frames else _frame([])
    problems = problems + _conflicts(frame)
    if problems:
        raise CorpusError(problems)
    if frame.empty:
        raise CorpusError([InputProblem(description, None, None, "no labelled sentence")])
    key = frame["sentence"].str.lower()
    duplicates = int(key.duplicated().sum())
    frame = frame.loc[~key.duplicated()].reset_index(drop=True)
    if duplicates:
        description += f"; {duplicates} repeated sentence(s) kept once"
    return Corpus(frame, description)


def _conflicts(frame: pd.DataFrame) -> list[InputProblem]:
    """The same sentence (case-insensitively) under two labels: a labelling error to fix, not to guess."""
    key = frame["sentence"].str.lower()
    labels_per = frame.groupby(key)["label"].nunique()
    problems = []
    for sentence in labels_per[labels_per > 1].index:
        rows = frame.loc[key == sentence]
        where = ", ".join(f"{s} ({lbl})" for s, lbl in zip(rows["source"], rows["label"], strict=True))
        problems.append(
            InputProblem(where, None, "label", f"the same sentence has different labels: {sentence[:60]!r}")
        )
    return problems
