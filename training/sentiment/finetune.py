"""Fine-tune a :class:`TextClassifier` on labelled sentences (PyTorch, CPU, seeded).

AdamW with linear warm-up and decay, dynamic padding per batch, and a class-weighted loss (the
project's set and Financial PhraseBank are both unbalanced; weighting keeps the minority class in
macro-F1). The word embeddings are frozen by default: on ~1,500 sentences they gain nothing from
training and cost a quarter of each step; a word never seen in training keeps its pre-trained vector.
``freeze_layers`` also fixes the lowest encoder layers, which shortens the backward pass.

The number of epochs is fixed by the configuration, not picked on the validation set: the
validation figures stay an honest estimate. ``on_epoch`` may evaluate after each epoch, for the log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from training.errors import TrainingError
from training.sentiment.text_classifier import TextClassifier, pad_batch


@dataclass(frozen=True)
class FineTuneConfig:
    """Optimisation settings; the defaults suit all-MiniLM-L6-v2 on a few thousand sentences."""

    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    freeze_embeddings: bool = True
    freeze_layers: int = 2
    class_weighted: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise TrainingError("fine-tuning needs epochs >= 1, batch_size >= 1 and learning_rate > 0")


@dataclass
class FineTuneResult:
    """What the loop did: steps, wall time, mean training loss and the ``on_epoch`` value per epoch."""

    steps: int = 0
    seconds: float = 0.0
    epoch_loss: list[float] = field(default_factory=list)
    epoch_metric: list[float] = field(default_factory=list)


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency ("balanced") weights n / (k * count): mean weight per sentence 1; an absent class gets 0."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    weights: np.ndarray = np.divide(counts.sum() / n_classes, counts, out=np.zeros(n_classes), where=counts > 0)
    return weights


def fine_tune(
    classifier: TextClassifier,
    texts: Sequence[str],
    labels: np.ndarray,
    config: FineTuneConfig,
    *,
    on_epoch: Callable[[], float] | None = None,
    progress: bool = True,
) -> FineTuneResult:
    """Train ``classifier.model`` in place on ``texts`` with class indices ``labels``."""
    import torch

    if len(texts) != len(labels) or not len(texts):
        raise TrainingError("fine-tuning needs as many labels as texts, and at least one of each")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = classifier.model
    _freeze(model, embeddings=config.freeze_embeddings, layers=config.freeze_layers)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(texts) // config.batch_size)
    schedule = _linear_schedule(optimiser, steps_per_epoch * config.epochs, config.warmup_fraction)
    weight = class_weights(labels, 3) if config.class_weighted else np.ones(3)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weight, dtype=torch.float32))
    ids = classifier.encode(texts)
    pad_id = classifier.tokenizer.pad_token_id or 0
    result = FineTuneResult()
    started = time.perf_counter()
    with tqdm(total=steps_per_epoch * config.epochs, desc="  fine-tune", unit="step", disable=not progress) as bar:
        for _epoch in range(config.epochs):
            model.train()
            order = rng.permutation(len(ids))
            losses = []
            for start in range(0, len(order), config.batch_size):
                rows = order[start : start + config.batch_size]
                input_ids, mask = pad_batch([ids[i] for i in rows], pad_id)
                logits = model(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(mask)).logits
                loss = loss_fn(logits, torch.from_numpy(labels[rows].astype(np.int64)))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                optimiser.step()
                schedule.step()
                optimiser.zero_grad()
                losses.append(float(loss.detach()))
                result.steps += 1
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            model.eval()
            result.epoch_loss.append(float(np.mean(losses)))
            if on_epoch is not None:
                result.epoch_metric.append(on_epoch())
    result.seconds = time.perf_counter() - started
    return result


def _freeze(model: Any, *, embeddings: bool, layers: int) -> None:
    """Fix the word embeddings and the lowest ``layers`` encoder layers (no gradient, no optimiser state)."""
    frozen = [model.base_model.embeddings] if embeddings else []
    frozen += list(model.base_model.encoder.layer[:layers])
    for module in frozen:
        for param in module.parameters():
            param.requires_grad = False


def _linear_schedule(optimiser: Any, total_steps: int, warmup_fraction: float) -> Any:
    import torch

    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
