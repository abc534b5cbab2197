"""``POST /v1/sentiment``: text -> negative/neutral/positive probabilities from ``sentiment_text``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.deps import InferenceClientDep, SentimentReader
from api.errors import InvalidRequestError, ModelCallError, ModelNotDeployedError, NoModelAvailableError
from api.handlers import ERROR_RESPONSES
from api.idempotency_http import IDEMPOTENCY_RESPONSES, SentimentIdempotency
from api.schemas import SentimentPublic, SentimentRequest, SentimentScores
from feature_repo.contract import SENTIMENT_LABELS, SENTIMENT_TEXT, TEXT_INPUT

router = APIRouter(prefix="/v1", tags=["sentiment"])
MODEL = SENTIMENT_TEXT
LABELS = SENTIMENT_LABELS
# A transformer on CPU needs far longer than a tree model: the largest request (64 texts of 128
# tokens) took about 3 s on one core when measured; 20 x MODEL_TIMEOUT_S is 10 s by default. Still bounded.
TIMEOUT_FACTOR = 20.0


def _rows(outputs: dict[str, list[Any]], n: int) -> list[tuple[float, float, float]]:
    """Accept either three ``[n]`` outputs named by label or one ``probabilities`` ``[n, 3]`` output."""
    if all(label in outputs for label in LABELS):
        columns = [outputs[label] for label in LABELS]
        if any(len(c) != n for c in columns):
            raise ValueError("output length differs from the number of texts")
        return [(float(a), float(b), float(c)) for a, b, c in zip(*columns, strict=True)]
    flat = outputs.get("probabilities")
    if flat is None:
        raise ValueError("no probabilities in the response")
    values = [float(v) for row in flat for v in (row if isinstance(row, list) else [row])]
    if len(values) != 3 * n:
        raise ValueError("probabilities are not [n, 3]")
    return [(values[3 * i], values[3 * i + 1], values[3 * i + 2]) for i in range(n)]


@router.post("/sentiment", response_model=SentimentPublic, responses={**ERROR_RESPONSES, **IDEMPOTENCY_RESPONSES})
async def score_sentiment(
    request: Request,
    body: SentimentRequest,
    client: InferenceClientDep,
    _principal: SentimentReader,
    _idempotency: SentimentIdempotency,
) -> SentimentPublic:
    """Sentiment probabilities for short financial texts."""
    if not client.deployed(MODEL):
        raise ModelNotDeployedError("the sentiment model (sentiment_text) is not deployed")
    inputs = [{"name": TEXT_INPUT, "datatype": "BYTES", "shape": [len(body.texts)], "data": body.texts}]
    try:
        result = await client.infer(MODEL, inputs, timeout_s=client.timeout_s * TIMEOUT_FACTOR)
        rows = _rows(result.outputs, len(body.texts))
    except ModelCallError as e:
        if e.refused:
            # The server is up and refused these texts (a blank one, say): the client's mistake, not an outage.
            raise InvalidRequestError(f"the sentiment model refused the texts: {e.detail or e.reason}") from e
        raise NoModelAvailableError(f"the sentiment model is unavailable: {e}") from e
    except (ValueError, TypeError) as e:
        raise NoModelAvailableError(f"the sentiment model answered in an unexpected shape: {e}") from e
    results = [
        SentimentScores(negative=a, neutral=b, positive=c, label=LABELS[max(range(3), key=lambda i: (a, b, c)[i])])
        for a, b, c in rows
    ]
    return SentimentPublic(results=results, model_version=result.version, request_id=request.state.request_id)
