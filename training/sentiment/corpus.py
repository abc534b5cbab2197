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

A user's sentence without a family is its own family, so their split is a plain random one. A bad
line (empty sentence, unknown label) is reported with its file and line and the corpus is refused:
training on silently dropped rows would hide the problem. The same sentence under two labels
(case-insensitively) cannot be fixed by a guess either way: every row of it is dropped, the drop is
counted in the description and each row is named (file and line) in :attr:`Corpus.conflicts`.
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
    """Labelled sentences in :data:`COLUMNS`, where they came from in words, and the rows dropped as conflicts."""

    frame: pd.DataFrame
    description: str
    conflicts: tuple[InputProblem, ...] = ()  # one per sentence seen under two labels
    conflicting_rows: int = 0  # the rows those sentences had, all dropped

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
    if problems:
        raise CorpusError(problems)
    before = len(frame)
    frame, conflicts = _drop_conflicts(frame)
    dropped = before - len(frame)
    if frame.empty:
        raise CorpusError([*conflicts, InputProblem(description, None, None, "no labelled sentence")])
    key = frame["sentence"].str.lower()
    duplicates = int(key.duplicated().sum())
    frame = frame.loc[~key.duplicated()].reset_index(drop=True)
    if conflicts:
        description += f"; {len(conflicts)} sentence(s) with conflicting labels dropped ({dropped} rows)"
    if duplicates:
        description += f"; {duplicates} repeated sentence(s) kept once"
    return Corpus(frame, description, tuple(conflicts), dropped)


def _drop_conflicts(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[InputProblem]]:
    """Drop every row of a sentence (case-insensitively) seen under two labels; one problem per sentence.

    A labelling error cannot be settled by a guess (first wins, majority wins): both readings leave.
    Each problem names the file, the line of the first row, and every row with its label.
    """
    key = frame["sentence"].str.lower()
    labels_per = frame.groupby(key)["label"].nunique()
    conflicting = labels_per[labels_per > 1].index
    problems = []
    for sentence in conflicting:
        rows = frame.loc[key == sentence]
        file, _, line = str(rows["source"].iloc[0]).rpartition(":")
        where = ", ".join(f"{s} ({lbl})" for s, lbl in zip(rows["source"], rows["label"], strict=True))
        message = f"the same sentence has different labels, all its rows dropped: {sentence[:60]!r} at {where}"
        problems.append(InputProblem(file, int(line) if line.isdigit() else None, "label", message))
    return frame.loc[~key.isin(conflicting)].reset_index(drop=True), problems


@dataclass(frozen=True)
class HeldOutCorpus:
    """One labelled file cut by its own row numbers into training rows and reported validation rows."""

    train: Corpus
    valid: Corpus
    leaked: int  # training rows dropped because the same sentence is a validation row


def load_held_out(path: Path, *, train_rows: tuple[int, int] | None, valid_rows: tuple[int, int]) -> HeldOutCorpus:
    """Rows ``train_rows`` and ``valid_rows`` (1-based data rows, the header not counted, inclusive) of ``path``.

    Conflicting labels are dropped over the whole file first (a sentence under two labels leaves both
    sides); repeats are kept once per side, and a training row whose sentence is also a validation
    row is dropped, so no validation sentence is ever trained on. ``train_rows`` None: every row
    outside ``valid_rows``.

    Raises:
        CorpusError: a bad line, an empty side, or a row range outside the file.
    """
    whole = load_labelled([path])  # refuses bad lines; its conflicts are re-found below, row by row
    offset, last = _data_rows(path)
    for name, (first, end) in (("valid_rows", valid_rows), ("train_rows", train_rows or (1, last))):
        if not 1 <= first <= end <= last:
            raise CorpusError([InputProblem(str(path), None, name, f"rows {first}-{end} are outside 1-{last}")])
    frame = _read_csv(path, require_family=False)[0] if path.suffix.lower() == ".csv" else _read_phrasebank(path)[0]
    frame, _ = _drop_conflicts(frame)
    row = frame["source"].str.rpartition(":")[2].astype(int) - offset
    in_valid = row.between(*valid_rows)
    in_train = row.between(*train_rows) if train_rows else ~in_valid
    valid = _once(frame.loc[in_valid])
    train = _once(frame.loc[in_train & ~in_valid])
    leaked = train["sentence"].str.lower().isin(set(valid["sentence"].str.lower()))
    train = train.loc[~leaked].reset_index(drop=True)
    for side, part in (("train_rows", train), ("valid_rows", valid)):
        if part.empty:
            raise CorpusError([InputProblem(str(path), None, side, "no labelled sentence in these rows")])
    conflicts = f"; {len(whole.conflicts)} conflicting sentence(s) dropped" if whole.conflicts else ""
    train_span = f"{train_rows[0]}-{train_rows[1]}" if train_rows else f"outside {valid_rows[0]}-{valid_rows[1]}"
    return HeldOutCorpus(
        Corpus(train, f"{path.name} rows {train_span}{conflicts}", whole.conflicts, whole.conflicting_rows),
        Corpus(valid, f"{path.name} rows {valid_rows[0]}-{valid_rows[1]}{conflicts}"),
        int(leaked.sum()),
    )


def _once(frame: pd.DataFrame) -> pd.DataFrame:
    """Each sentence (case-insensitively) once, at its first row."""
    return frame.loc[~frame["sentence"].str.lower().duplicated()].reset_index(drop=True)


def _data_rows(path: Path) -> tuple[int, int]:
    """Header lines (1 for a CSV whose first line names sentence/label, else 0) and data rows in ``path``."""
    text = _decode(path)
    if path.suffix.lower() != ".csv":
        return 0, len(text.splitlines())
    records = list(csv.reader(io.StringIO(text)))
    header = int(bool(records) and _header_columns([h.strip().lower() for h in records[0]]) is not None)
    return header, len(records) - header
