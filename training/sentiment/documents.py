"""Stored documents scored by the text model, in the ``scored_documents`` contract.

A document is scored on its title and the start of its body (the model reads ``max_length`` tokens,
about the headline and lead paragraph of a news item or announcement), which is where the news is.
Scoring is incremental: a document already scored by the same model version is not scored again, so
re-running the stage after new documents arrive costs only the new ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from feature_repo.tables import SCORED_DOCUMENT_COLUMNS, TICKER
from training.errors import TrainingError

# texts -> probabilities [n, 3] (negative, neutral, positive)
Scorer = Callable[[Sequence[str]], np.ndarray]


def document_texts(documents: pd.DataFrame) -> list[str]:
    """``title. body`` per document (either may be empty), whitespace collapsed."""
    titles = documents["title"].fillna("").astype(str)
    bodies = documents["body"].fillna("").astype(str)
    texts = []
    for title, body in zip(titles, bodies, strict=True):
        head = title.strip()
        if head and body.strip() and not head.endswith((".", "!", "?", ":")):
            head += "."
        texts.append(" ".join(f"{head} {body}".split()))
    return texts


def unscored(documents: pd.DataFrame, scored: pd.DataFrame, model_version: str) -> pd.DataFrame:
    """The documents not yet scored by ``model_version``."""
    done = scored.loc[scored["model_version"].astype(str) == model_version, "doc_id"]
    return documents.loc[~documents["doc_id"].isin(set(done))]


def score_documents(
    documents: pd.DataFrame,
    scorer: Scorer,
    model_version: str,
    *,
    chunk: int = 512,
    on_progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """``SCORED_DOCUMENT_COLUMNS`` rows for ``documents``; ``score`` = P(positive) - P(negative)."""
    texts = document_texts(documents)
    parts = []
    for start in range(0, len(texts), chunk):
        parts.append(scorer(texts[start : start + chunk]))
        if on_progress is not None:
            on_progress(min(start + chunk, len(texts)))
    probabilities = np.vstack(parts) if parts else np.zeros((0, 3))
    frame = pd.DataFrame(
        {
            "doc_id": documents["doc_id"].to_numpy(),
            TICKER: documents[TICKER].to_numpy(),
            "published_at": documents["published_at"].to_numpy(),
            "p_negative": probabilities[:, 0],
            "p_neutral": probabilities[:, 1],
            "p_positive": probabilities[:, 2],
            "score": probabilities[:, 2] - probabilities[:, 0],
            "model_version": model_version,
        }
    )
    return frame.loc[:, list(SCORED_DOCUMENT_COLUMNS)]


# Which text model's scores the features use. ``scored_documents`` keeps every version's scores
# (its key is doc_id + model_version), so a rollback needs no re-scoring; this file names the one
# in force, written by the sentiment stage after it has scored every stored document.
ACTIVE_VERSION_FILE = Path("sentiment") / "active_version.json"


def write_active_version(data_dir: Path, model_version: str) -> Path:
    """Record ``model_version`` as the scores the features stage reads (atomically replaced)."""
    path = data_dir / ACTIVE_VERSION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"model_version": model_version}) + "\n")
    tmp.replace(path)
    return path


def active_scores(scored: pd.DataFrame, data_dir: Path) -> tuple[pd.DataFrame, str | None]:
    """One score per document: the recorded active version's, else the only version present.

    Returns:
        The rows to aggregate and the version they come from (None when ``scored`` is empty).

    Raises:
        TrainingError: several versions are stored and none is recorded as active.
    """
    versions = sorted(scored["model_version"].astype(str).unique())
    path = data_dir / ACTIVE_VERSION_FILE
    version: str | None
    if path.is_file():
        version = str(json.loads(path.read_text())["model_version"])
    elif len(versions) <= 1:
        version = versions[0] if versions else None
    else:
        raise TrainingError(
            f"scored_documents holds scores of {len(versions)} text model versions {versions} and {path} "
            "does not say which is in force: run the sentiment stage"
        )
    return scored.loc[scored["model_version"].astype(str) == version], version
