"""Test data for the sentiment package, in one place: labelled sentences, corpus files, documents.

Everything is written for these tests (fictional companies); files go under a test's ``tmp_path``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from feature_repo.tables import DOCUMENT_COLUMNS

COMPANIES = ("Acme", "Borealis", "Cobalt", "Dunmore", "Ember", "Fjordline", "Garnet", "Helix")
# One template per label, in LABELS order (negative, neutral, positive): a tiny separable set.
TEMPLATES = (
    "{} slumped to a heavy loss and warned that weak demand would cut earnings.",
    "{} will hold its annual general meeting in Sydney on Thursday.",
    "{} lifted its profit guidance after record sales and a strong rise in earnings.",
)
# Unseen companies in the training templates' wording: a fitted model labels these clearly.
CLEAR = (
    "Zenith slumped to a heavy loss and warned that weak demand would cut earnings.",
    "Kestrel will hold its annual general meeting in Sydney on Thursday.",
    "Orbit lifted its profit guidance after record sales and a strong rise in earnings.",
)
CLEAR_LABELS = np.array([0, 1, 2])

# A user's PhraseBank-style corpus: several wordings per label, many companies, no families.
USER_WORDINGS = {
    "negative": (
        "{} shares fell after the company reported a wider quarterly loss .",
        "{} cut its dividend as revenue declined sharply .",
        "{} warned that full-year earnings would miss expectations .",
    ),
    "neutral": (
        "{} will publish its interim report on Thursday .",
        "{} has its headquarters in Helsinki , Finland .",
        "The annual general meeting of {} will be held in May .",
    ),
    "positive": (
        "{} raised its full-year profit forecast after strong sales .",
        "Operating profit at {} rose 25 % to EUR 40 mn .",
        "{} won a large new supply contract worth EUR 120 mn .",
    ),
}
USER_COMPANIES = ("Aspo", "Basware", "Componenta", "Elisa", "Fiskars", "Kesko", "Orion")


def separable_set(companies: Sequence[str] = COMPANIES) -> tuple[list[str], np.ndarray]:
    """One sentence per company and label: texts and class indices (0 negative, 1 neutral, 2 positive)."""
    texts = [template.format(name) for template in TEMPLATES for name in companies]
    return texts, np.repeat(np.arange(len(TEMPLATES)), len(companies))


def user_corpus_rows() -> list[tuple[str, str]]:
    """(sentence, label) pairs, 21 per label, every sentence distinct."""
    return [
        (wording.format(name), label)
        for label, wordings in USER_WORDINGS.items()
        for wording in wordings
        for name in USER_COMPANIES
    ]


def write_phrasebank(path: Path, rows: Sequence[tuple[str, str]], *, extra_lines: Sequence[str] = ()) -> Path:
    """Financial PhraseBank's ``Sentences_*.txt`` layout: ``sentence@label`` lines, ISO-8859-1."""
    lines = [f"{sentence}@{label}" for sentence, label in rows] + list(extra_lines)
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("latin-1"))
    return path


def write_news_csv(path: Path, rows: Sequence[tuple[str, str, str, str]]) -> Path:
    """A user's documents file: (ticker, published_at, title, body) rows under the documents header."""
    frame = pd.DataFrame(rows, columns=["ticker", "published_at", "title", "body"])
    frame.insert(0, "id", [f"n{i}" for i in range(len(frame))])
    frame.to_csv(path, index=False)
    return path


def document_frame(rows: Sequence[tuple[str, str, str | None, str | None]]) -> pd.DataFrame:
    """Stored documents (``DOCUMENT_COLUMNS``) from (doc_id, ticker, title, body) rows."""
    frame = pd.DataFrame(rows, columns=["doc_id", "ticker", "title", "body"])
    frame["published_at"] = pd.date_range("2024-01-02T10:00:00Z", periods=len(frame), freq="h")
    frame["source"] = "test"
    frame["synthetic"] = False
    return frame.loc[:, list(DOCUMENT_COLUMNS)]


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the count.

    On a small shared machine, two OpenMP threads waiting on each other make a fine-tune step about ten
    times slower. Tests compare results computed under the same setting, never across thread counts.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
