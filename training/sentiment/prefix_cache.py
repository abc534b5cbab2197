"""Train the top encoder layers from cached lower-layer states: the frozen layers run once, not every epoch.

With the word embeddings and the lowest ``k`` layers frozen, their output for a sentence never changes
during the fine-tune. Computing it once (evaluation mode, no gradient) and feeding the trainable top
layers from that cache removes the frozen forward pass from every step: on all-MiniLM-L6-v2 with 4 of
6 layers frozen a step costs about a third of the full pass. On a shared two-core CPU this decides
whether a fine-tune on ten thousand real posts fits at all.

The frozen layers then run without dropout (evaluation mode); the trainable layers keep theirs. The
cached states are exactly what the full model computes for those layers, which
``tests/test_sentiment_model.py`` checks against the model's own logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from training.sentiment.text_classifier import pad_batch


def _extended_mask(mask: Any, dtype: Any) -> Any:
    """The additive attention mask ``[batch, 1, 1, length]`` (0 on tokens, a large negative on padding)."""
    import torch

    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def encode_prefix(
    model: Any, ids: Sequence[Sequence[int]], pad_id: int, frozen_layers: int, *, batch_size: int = 64
) -> list[Any]:
    """Hidden states after the embeddings and the lowest ``frozen_layers`` layers, one unpadded tensor per text."""
    import torch

    bert = model.base_model
    order = np.argsort([len(x) for x in ids], kind="stable")
    states: list[Any] = [None] * len(ids)
    was_training = model.training
    model.eval()
    # no_grad, not inference_mode: the cached tensors feed layers that are trained (autograd saves them).
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            rows = order[start : start + batch_size]
            input_ids, mask = pad_batch([ids[i] for i in rows], pad_id)
            hidden = bert.embeddings(input_ids=torch.from_numpy(input_ids))
            extended = _extended_mask(torch.from_numpy(mask), hidden.dtype)
            for layer in bert.encoder.layer[:frozen_layers]:
                hidden = layer(hidden, extended)
            for r, i in enumerate(rows):
                states[i] = hidden[r, : len(ids[i])].clone()
    model.train(was_training)
    return states


def top_logits(model: Any, states: Sequence[Any], frozen_layers: int) -> Any:
    """Logits ``[len(states), labels]`` from cached states through the top layers, the pooler and the head."""
    import torch

    bert = model.base_model
    width = max(int(s.shape[0]) for s in states)
    hidden = torch.zeros((len(states), width, int(states[0].shape[1])), dtype=states[0].dtype)
    mask = torch.zeros((len(states), width), dtype=torch.int64)
    for r, s in enumerate(states):
        hidden[r, : s.shape[0]] = s
        mask[r, : s.shape[0]] = 1
    extended = _extended_mask(mask, hidden.dtype)
    for layer in bert.encoder.layer[frozen_layers:]:
        hidden = layer(hidden, extended)
    return model.classifier(model.dropout(bert.pooler(hidden)))


def cached_logits(model: Any, states: Sequence[Any], frozen_layers: int, *, batch_size: int = 64) -> np.ndarray:
    """Evaluation-mode logits for every cached text (length-sorted batches), rows in ``states`` order."""
    import torch

    order = np.argsort([int(s.shape[0]) for s in states], kind="stable")
    out = np.empty((len(states), int(model.config.num_labels)))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(states), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = top_logits(model, [states[i] for i in rows], frozen_layers).float().numpy()
    model.train(was_training)
    return out
