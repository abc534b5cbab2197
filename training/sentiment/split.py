"""Train/validation split by family, so validation sentences are never paraphrases of training ones.

A family is one idea written several ways (the project's set) or one sentence (a user's corpus
without families). Families are ordered by a seeded hash, within each topic, and whole families go
to validation until it holds ``valid_fraction`` of the topic's sentences: every topic is seen on
both sides, and the split is the same on every machine for a seed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd

from training.errors import TrainingError
from training.sentiment import LABELS


@dataclass(frozen=True)
class Split:
    """The two sides; ``family`` sets are disjoint by construction."""

    train: pd.DataFrame
    valid: pd.DataFrame


def _order_key(seed: int, family: str) -> str:
    return hashlib.sha256(f"{seed}:{family}".encode()).hexdigest()


def split_by_family(frame: pd.DataFrame, *, valid_fraction: float = 0.2, seed: int = 0) -> Split:
    """Whole families to validation, topic by topic, until each topic's share reaches the fraction.

    Raises:
        TrainingError: a fraction outside (0, 1), or a side without every label.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise TrainingError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    chosen: set[str] = set()
    for _topic, rows in frame.groupby("topic", sort=True):
        sizes = rows.groupby("family").size()
        target = valid_fraction * len(rows)
        taken = 0
        for family in sorted(sizes.index, key=lambda f: _order_key(seed, str(f))):
            if taken >= target:
                break
            chosen.add(str(family))
            taken += int(sizes[family])
    in_valid = frame["family"].isin(chosen)
    split = Split(frame.loc[~in_valid].reset_index(drop=True), frame.loc[in_valid].reset_index(drop=True))
    for side, part in (("train", split.train), ("validation", split.valid)):
        missing = [label for label in LABELS if not (part["label"] == label).any()]
        if missing:
            raise TrainingError(
                f"the {side} side of the split has no {', '.join(missing)} sentence; "
                "a larger corpus or another valid_fraction is needed"
            )
    return split
