"""KServe model of the text classifier: negative/neutral/positive probabilities per text, from the champion pyfunc.

The request carries one input, ``text`` (BYTES ``[n]``: a JSON list of strings, or the binary
extension's bytes decoded as UTF-8); a v1 ``{"instances": [...]}`` may hold plain strings or
``{"text": ...}`` objects. The server refuses, with a 400 and a reason, what the gateway's own limits
refuse (more than ``max_texts`` texts, a text over :data:`~feature_repo.contract.MAX_TEXT_CHARS`
characters) and what the model cannot score (a missing or extra input, a non-string, empty or blank
text), before the pyfunc runs. Scoring runs a transformer on the CPU: it runs in the model's own
thread, one request at a time, so the event loop keeps answering ``/metrics`` and the probes.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

import numpy as np
import pandas as pd
from kserve.protocol.infer_type import InferRequest, InferResponse

from feature_repo.contract import MAX_TEXT_CHARS, MAX_TEXTS, SENTIMENT_LABELS, SENTIMENT_TEXT, TEXT_INPUT
from serving.champion import Champion
from serving.errors import BadRequest
from serving.loaders import LoadedSentimentText
from serving.model_base import ChampionModel
from serving.tensors import Columns, check_columns, pyfunc_outputs

_SHOWN: Final = 5  # row positions named in a refusal
_V1_SHAPE: Final = "a v1 payload is {'instances': [<text>, ...]} or {'instances': [{'text': <text>}, ...]}"


def _positions(rows: list[int]) -> str:
    shown = ", ".join(str(i) for i in rows[:_SHOWN])
    return shown if len(rows) <= _SHOWN else f"{shown} (+{len(rows) - _SHOWN} more)"


def checked_texts(columns: Columns, max_texts: int) -> list[str]:
    """The request's texts: one ``text`` input of 1..``max_texts`` non-blank strings of at most 2,000 characters.

    Raises:
        BadRequest: a missing or extra input, no texts, too many, a blank or an over-long text.
    """
    rows = check_columns(columns, (TEXT_INPUT,), require_all=True)
    if rows == 0:
        raise BadRequest(f"input '{TEXT_INPUT}' holds no texts; send 1 to {max_texts}")
    if rows > max_texts:
        raise BadRequest(f"{rows} texts in one request; at most {max_texts}")
    texts = [str(t) for t in columns[TEXT_INPUT]]
    blank = [i for i, t in enumerate(texts) if not t.strip()]
    if blank:
        raise BadRequest(f"'{TEXT_INPUT}' is empty or blank at position(s) {_positions(blank)}")
    long = [i for i, t in enumerate(texts) if len(t) > MAX_TEXT_CHARS]
    if long:
        raise BadRequest(f"'{TEXT_INPUT}' is longer than {MAX_TEXT_CHARS} characters at position(s) {_positions(long)}")
    return texts


def v1_objects(payload: Any) -> Any:
    """A v1 payload whose instances are plain strings, as ``{"text": ...}`` objects (anything else unchanged)."""
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if isinstance(instances, list) and instances and all(isinstance(i, str) for i in instances):
        return {**payload, "instances": [{TEXT_INPUT: text} for text in instances]}
    return payload


class SentimentTextModel(ChampionModel[LoadedSentimentText]):
    """``negative``, ``neutral`` and ``positive`` per text, in the request's row order.

    Args:
        name: the KServe model name.
        champion: the loaded version.
        max_texts: the most texts one request may carry (the gateway's limit by default).
    """

    text_inputs: ClassVar[frozenset[str]] = frozenset({TEXT_INPUT})
    compute_in_thread: ClassVar[bool] = True

    def __init__(self, name: str, champion: Champion[LoadedSentimentText], max_texts: int = MAX_TEXTS) -> None:
        super().__init__(name, champion)
        self.max_texts = max_texts

    async def predict(
        self, payload: InferRequest | dict[str, Any], headers: dict[str, str] | None = None
    ) -> InferResponse | dict[str, Any]:
        """Name an unknown input before decoding it (any datatype), accept v1 strings, then answer."""
        if isinstance(payload, InferRequest):
            unknown = [i.name for i in payload.inputs if i.name != TEXT_INPUT]
            if unknown:
                raise BadRequest(f"unknown inputs {unknown}; the model takes one input '{TEXT_INPUT}' (BYTES [n])")
        else:
            payload = v1_objects(payload)
            instances = payload.get("instances") if isinstance(payload, dict) else None
            if not isinstance(instances, list) or not instances or not all(isinstance(i, dict) for i in instances):
                raise BadRequest(_V1_SHAPE)
        return await super().predict(payload, headers)

    def compute(self, loaded: LoadedSentimentText, columns: Columns) -> tuple[int, dict[str, np.ndarray]]:
        """Check the texts, then run the pyfunc on them (in the model's thread)."""
        texts = checked_texts(columns, self.max_texts)
        frame = pd.DataFrame({TEXT_INPUT: pd.Series(texts, dtype=object)})
        try:
            result = loaded.model.predict(frame)
        except ValueError as e:  # the pyfunc's refusal of its inputs (documented as ValueError)
            raise BadRequest(f"the sentiment model refused the request: {e}") from e
        return len(texts), pyfunc_outputs(result, SENTIMENT_LABELS, len(texts), SENTIMENT_TEXT, loaded.version)
