"""Fine-tune a :class:`TextClassifier` on labelled sentences (PyTorch, CPU, seeded).

AdamW with a warm-up then linear or cosine decay, dynamic padding per batch, and a class-weighted
loss (every labelled set here is unbalanced: real news is mostly neutral; weighting keeps the
minority classes in macro-F1). The word embeddings are frozen by default, and ``freeze_layers`` also
fixes the lowest encoder layers; with ``cache_frozen`` those frozen layers run once over the corpus
(:mod:`~training.sentiment.prefix_cache`) instead of on every step.

Early stopping: with ``valid`` given (a split carved from the *training* rows, never the reported
validation set) and ``patience`` set, macro-F1 on ``valid`` is measured after each epoch, the best
epoch's weights are kept, and training stops after ``patience`` epochs without a gain. The result
carries the best epoch's logits on ``valid``, from which the temperature is fitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from training.errors import TrainingError
from training.sentiment.metrics import classification_report
from training.sentiment.prefix_cache import cached_logits, encode_prefix, top_logits
from training.sentiment.text_classifier import TextClassifier, pad_batch


@dataclass(frozen=True)
class FineTuneConfig:
    """Optimisation settings; the defaults suit all-MiniLM-L6-v2 on a few thousand sentences."""

    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    schedule: Literal["linear", "cosine"] = "linear"
    freeze_embeddings: bool = True
    freeze_layers: int = 2
    cache_frozen: bool = True
    class_weighted: bool = True
    patience: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise TrainingError("fine-tuning needs epochs >= 1, batch_size >= 1 and learning_rate > 0")
        if self.patience is not None and self.patience < 1:
            raise TrainingError(f"patience must be at least 1 epoch (or None), got {self.patience}")

    @property
    def caches(self) -> bool:
        """Whether the frozen bottom runs once: only when everything below the trainable layers is frozen."""
        return self.cache_frozen and self.freeze_embeddings and self.freeze_layers >= 1


@dataclass
class FineTuneResult:
    """What the loop did: steps, wall time, mean training loss and validation macro-F1 per epoch."""

    steps: int = 0
    seconds: float = 0.0
    epoch_loss: list[float] = field(default_factory=list)
    epoch_metric: list[float] = field(default_factory=list)
    best_epoch: int = 0  # 1-based; 0 when no validation set was given
    stopped_early: bool = False
    valid_logits: np.ndarray | None = None  # the kept weights' logits on ``valid``


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency ("balanced") weights n / (k * count): mean weight per sentence 1; an absent class gets 0."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    weights: np.ndarray = np.divide(counts.sum() / n_classes, counts, out=np.zeros(n_classes), where=counts > 0)
    return weights


class _Batches:
    """Logits for a batch of rows: from cached frozen states, or the full model from token ids."""

    def __init__(self, classifier: TextClassifier, texts: Sequence[str], config: FineTuneConfig) -> None:
        self.model = classifier.model
        self.ids = classifier.encode(texts)
        self.pad_id = classifier.tokenizer.pad_token_id or 0
        self.frozen = config.freeze_layers if config.caches else 0
        self.states = encode_prefix(self.model, self.ids, self.pad_id, self.frozen) if config.caches else None

    def __len__(self) -> int:
        return len(self.ids)

    def logits(self, rows: np.ndarray) -> Any:
        import torch

        if self.states is not None:
            return top_logits(self.model, [self.states[i] for i in rows], self.frozen)
        input_ids, mask = pad_batch([self.ids[i] for i in rows], self.pad_id)
        return self.model(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(mask)).logits

    def all_logits(self) -> np.ndarray:
        """Evaluation-mode logits of every row, in order."""
        import torch

        if self.states is not None:
            return cached_logits(self.model, self.states, self.frozen)
        self.model.eval()
        out = np.empty((len(self.ids), int(self.model.config.num_labels)))
        order = np.argsort([len(x) for x in self.ids], kind="stable")
        with torch.no_grad():
            for start in range(0, len(order), 64):
                rows = order[start : start + 64]
                out[rows] = self.logits(rows).float().numpy()
        return out


def fine_tune(
    classifier: TextClassifier,
    texts: Sequence[str],
    labels: np.ndarray,
    config: FineTuneConfig,
    *,
    valid: tuple[Sequence[str], np.ndarray] | None = None,
    on_epoch: Callable[[], float] | None = None,
    progress: bool = True,
) -> FineTuneResult:
    """Train ``classifier.model`` in place on ``texts`` with class indices ``labels`` (see the module docstring)."""
    import torch

    if len(texts) != len(labels) or not len(texts):
        raise TrainingError("fine-tuning needs as many labels as texts, and at least one of each")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = classifier.model
    _freeze(model, embeddings=config.freeze_embeddings, layers=config.freeze_layers)
    steps_per_epoch = -(-len(texts) // config.batch_size)
    optimisation = _Optimisation.build(model, labels, config, steps_per_epoch * config.epochs)
    train = _Batches(classifier, texts, config)
    checked = _Batches(classifier, valid[0], config) if valid is not None else None
    result, best_state, best_f1 = FineTuneResult(), None, -1.0
    started = time.perf_counter()
    with tqdm(total=steps_per_epoch * config.epochs, desc="  fine-tune", unit="step", disable=not progress) as bar:
        for epoch in range(1, config.epochs + 1):
            model.train()
            batches = np.array_split(rng.permutation(len(train)), steps_per_epoch)
            result.epoch_loss.append(optimisation.epoch(train, labels, batches, result, bar))
            model.eval()
            if checked is not None and valid is not None:
                logits = checked.all_logits()
                f1 = classification_report(valid[1], logits.argmax(axis=1)).macro_f1
                result.epoch_metric.append(f1)
                if f1 > best_f1:
                    best_f1, result.best_epoch, result.valid_logits = f1, epoch, logits
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                elif config.patience is not None and epoch - result.best_epoch >= config.patience:
                    result.stopped_early = epoch < config.epochs
                    break
            elif on_epoch is not None:
                result.epoch_metric.append(on_epoch())
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - started
    return result


@dataclass(frozen=True)
class _Optimisation:
    """The optimiser side of the loop: the class-weighted loss, AdamW over the trainable weights, the schedule."""

    trainable: list[Any]
    loss_fn: Any
    optimiser: Any
    schedule: Any

    @classmethod
    def build(cls, model: Any, labels: np.ndarray, config: FineTuneConfig, total_steps: int) -> _Optimisation:
        import torch

        trainable = [p for p in model.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        schedule = _schedule(optimiser, total_steps, config.warmup_fraction, config.schedule)
        weight = class_weights(labels, 3) if config.class_weighted else np.ones(3)
        loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weight, dtype=torch.float32))
        return cls(trainable, loss_fn, optimiser, schedule)

    def epoch(
        self, train: _Batches, labels: np.ndarray, batches: list[np.ndarray], result: FineTuneResult, bar: Any
    ) -> float:
        """One optimiser step per batch of rows (counted in ``result.steps``); the epoch's mean training loss."""
        import torch

        losses = []
        for rows in batches:
            loss = self.loss_fn(train.logits(rows), torch.from_numpy(labels[rows].astype(np.int64)))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)
            self.optimiser.step()
            self.schedule.step()
            self.optimiser.zero_grad()
            losses.append(float(loss.detach()))
            result.steps += 1
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        return float(np.mean(losses))


def _freeze(model: Any, *, embeddings: bool, layers: int) -> None:
    """Fix the word embeddings and the lowest ``layers`` encoder layers (no gradient, no optimiser state)."""
    frozen = [model.base_model.embeddings] if embeddings else []
    frozen += list(model.base_model.encoder.layer[:layers])
    for module in frozen:
        for param in module.parameters():
            param.requires_grad = False


def _schedule(optimiser: Any, total_steps: int, warmup_fraction: float, shape: str) -> Any:
    """Linear warm-up to the learning rate, then linear or cosine decay to zero at ``total_steps``."""
    import math

    import torch

    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        done = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * done)) if shape == "cosine" else 1.0 - done

    return torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
