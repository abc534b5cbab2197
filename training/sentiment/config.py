"""The ``sentiment:`` section of a run configuration: the text model's corpus, fine-tune and scoring."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from training.sentiment.finetune import FineTuneConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RealTextConfig(_Strict):
    """A labelled corpus of real text cut by its own row numbers: training rows and reported validation rows.

    The validation rows are only ever reported on: early stopping, the temperature and the promotion
    decision use a split carved from the training rows.
    """

    path: Path = Field(description="A 'sentence,label' CSV (a user brings it: it is never copied into the project).")
    valid_rows: tuple[int, int] = Field(description="1-based data rows (header not counted), inclusive: reported only.")
    train_rows: tuple[int, int] | None = Field(None, description="Rows that may be trained on; None: all the others.")
    train: bool = Field(True, description="Add the training rows to the fine-tune; false: only report on the rows.")
    calibration_sentences: int = Field(
        512, ge=32, description="Training rows whose activations calibrate the static int8 quantisation."
    )


class SentimentRunConfig(_Strict):
    """Fine-tune the text model, compare it with the lexicon, register it, and score the stored documents."""

    enabled: bool = True
    corpus: list[Path] = Field(
        default_factory=list,
        description="Labelled sentences to fine-tune on: 'sentence,label' CSV or Financial PhraseBank "
        "'sentence@label' .txt files. Empty: the project's own labelled set.",
    )
    real_text: RealTextConfig | None = Field(
        None, description="A real labelled corpus: its validation rows are reported on, its training rows trained on."
    )
    valid_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Share of each topic's sentences held out.")
    epochs: int = Field(3, ge=1, description="The most epochs; fewer when early stopping (patience) ends the run.")
    patience: int | None = Field(
        None, ge=1, description="Stop after this many epochs without a macro-F1 gain on the carved split; None: never."
    )
    schedule: Literal["linear", "cosine"] = Field("linear", description="Decay after the warm-up.")
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(1e-4, gt=0.0)
    max_length: int = Field(128, ge=8, le=512, description="Tokens kept per text; longer texts are truncated.")
    max_length_quantile: float | None = Field(
        None,
        gt=0.5,
        le=1.0,
        description="Pick max_length from the training texts' token lengths at this quantile (rounded up to 8, "
        "at most max_length); None: max_length as given.",
    )
    freeze_embeddings: bool = Field(True, description="Keep the pre-trained word embeddings fixed.")
    freeze_layers: int = Field(2, ge=0, le=6, description="Also keep the lowest encoder layers fixed (faster steps).")
    cache_frozen: bool = Field(True, description="Run the frozen layers once over the corpus, not on every step.")
    temperature_scaling: bool = Field(True, description="Fit a temperature on the carved split; served with the model.")
    seed: int = 0
    runtime: Literal["torch", "torch-int8", "onnx", "onnx-int8"] = Field(
        "torch",
        description="What the registered model runs: eager PyTorch, dynamic int8 quantisation (faster, changes "
        "some answers), ONNX Runtime (same answers), or ONNX Runtime int8: static int8 calibrated on real text "
        "first, ONNX Runtime's dynamic int8 when static is refused, each kept only when its macro-F1 on the check "
        "set (the real validation rows, else the carved split) stays within int8_tolerance of fp32's; fp32 ONNX "
        "when both are refused. Measured in bench/sentiment.py.",
    )
    int8_tolerance: float = Field(
        0.005, ge=0.0, description="The most macro-F1 an int8 runtime (static or dynamic) may lose against fp32."
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
            schedule=self.schedule,
            freeze_embeddings=self.freeze_embeddings,
            freeze_layers=self.freeze_layers,
            cache_frozen=self.cache_frozen,
            patience=self.patience,
            seed=self.seed,
        )
