"""The ``sentiment:`` section of a run configuration: the text model's corpus, fine-tune and scoring."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from training.sentiment.finetune import FineTuneConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SentimentRunConfig(_Strict):
    """Fine-tune the text model, compare it with the lexicon, register it, and score the stored documents."""

    enabled: bool = True
    corpus: list[Path] = Field(
        default_factory=list,
        description="Labelled sentences to fine-tune on: 'sentence,label' CSV or Financial PhraseBank "
        "'sentence@label' .txt files. Empty: the project's own labelled set.",
    )
    valid_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Share of each topic's sentences held out.")
    epochs: int = Field(3, ge=1, description="Fixed, never picked on the validation set.")
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(1e-4, gt=0.0)
    max_length: int = Field(128, ge=8, le=512, description="Tokens kept per text; longer texts are truncated.")
    freeze_embeddings: bool = Field(True, description="Keep the pre-trained word embeddings fixed.")
    freeze_layers: int = Field(2, ge=0, le=6, description="Also keep the lowest encoder layers fixed (faster steps).")
    seed: int = 0
    runtime: Literal["torch", "torch-int8", "onnx"] = Field(
        "torch",
        description="What the registered model runs: eager PyTorch, dynamic int8 quantisation (faster, changes "
        "some answers), or ONNX Runtime (same answers; measured in bench/sentiment.py).",
    )
    score_batch_size: int = Field(32, ge=1, description="Texts per batch when scoring documents and serving.")
    promotion_margin: float = Field(0.0, ge=0.0, description="Validation macro-F1 a challenger must gain.")
    synthetic_documents: Literal["when_none", "never"] = Field(
        "when_none",
        description="when_none: with no stored document for the universe, generate synthetic announcements "
        "(flagged synthetic) so the scoring and feature path runs; never: score only real documents.",
    )
    smoke_test: bool = Field(False, description="A few dozen sentences, one epoch: a wiring check.")

    def finetune(self) -> FineTuneConfig:
        """The optimisation settings of this section."""
        return FineTuneConfig(
            epochs=1 if self.smoke_test else self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            freeze_embeddings=self.freeze_embeddings,
            freeze_layers=self.freeze_layers,
            seed=self.seed,
        )
