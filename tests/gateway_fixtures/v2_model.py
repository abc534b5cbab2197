"""TEST-ONLY KServe model server following docs/serving-contract.md (not the real ``serving/`` package).

Scores are a fixed logistic function of the features (no training, no quality claimed):
``score = sigmoid(sum(coef_f * x_f))`` with ``coef = 0.3`` for cross-sectional z-scores and ``1.0``
for sentiment scores, missing values counting as 0. ``<name>-explain`` returns exactly those
terms plus ``bias = 0``, so contributions sum to the log-odds as the contract says, with the
score and ``logistic_link = 1``.

Run: ``python -m tests.gateway_fixtures.v2_model --http_port P --models technical,technical-explain``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import uuid
from typing import Any

import numpy as np


def coefficient(feature: str) -> float:
    if feature.endswith("_csz"):
        return 0.3
    if feature in ("sent_score_1d", "sent_mean_21d", "sent_decay_5d"):
        return 1.0
    return 0.0


def service_features(model: str) -> list[str]:
    from feature_repo.contract import SIGNAL_FEATURE_SERVICES, service_features

    return list(service_features(SIGNAL_FEATURE_SERVICES[model]))


def build_models(names: list[str], version: str, delay_s: float) -> list[Any]:
    """One kserve.Model per name (kserve imported here: only the server process needs it)."""
    from kserve import InferRequest, InferResponse, Model
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferOutput

    class ContractModel(Model):  # type: ignore[misc]
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.base = name.removesuffix("-explain")
            self.explain_mode = name.endswith("-explain")

        def load(self) -> bool:
            self.ready = True
            return True

        def _columns(self, payload: InferRequest) -> dict[str, np.ndarray]:
            return {i.name: np.asarray(i.data, dtype=object) for i in payload.inputs}

        async def predict(self, payload: InferRequest, headers: Any = None, response_headers: Any = None) -> Any:
            if delay_s:
                await asyncio.sleep(delay_s)
            if self.base == "sentiment_text":
                outputs = _sentiment([str(t) for t in payload.inputs[0].data])
            else:
                columns = {k: _floats(v) for k, v in self._columns(payload).items()}
                outputs = self._numeric(columns, InvalidInput)
            infer_outputs = []
            for out_name, values in outputs.items():
                out = InferOutput(name=out_name, shape=[len(values)], datatype="FP64")
                out.set_data_from_numpy(np.asarray(values, dtype=np.float64))
                infer_outputs.append(out)
            return InferResponse(
                model_name=self.name,
                infer_outputs=infer_outputs,
                response_id=payload.id or uuid.uuid4().hex,
                model_version=version,
            )

        def _numeric(self, columns: dict[str, np.ndarray], invalid: Any) -> dict[str, np.ndarray]:
            if self.base == "ensemble":
                return _ensemble(columns, invalid)
            expected = service_features(self.base)
            if set(columns) != set(expected):
                missing, unknown = set(expected) - set(columns), set(columns) - set(expected)
                raise invalid(f"missing features {sorted(missing)[:5]}, unknown {sorted(unknown)[:5]}")
            terms = {f: coefficient(f) * np.nan_to_num(columns[f], nan=0.0) for f in expected}
            if self.explain_mode:
                n = len(next(iter(columns.values())))
                logit = np.sum(list(terms.values()), axis=0)
                link = {"score": 1.0 / (1.0 + np.exp(-logit)), "logistic_link": np.ones(n)}
                return {**terms, "bias": np.zeros(n), **link}
            logit = np.sum(list(terms.values()), axis=0)
            return {"score": 1.0 / (1.0 + np.exp(-logit))}

    return [ContractModel(n) for n in names]


def _floats(values: np.ndarray) -> np.ndarray:
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def _ensemble(columns: dict[str, np.ndarray], invalid: Any) -> dict[str, np.ndarray]:
    allowed = {"technical", "fundamental", "sentiment_signal"}
    if not columns or not set(columns) <= allowed:
        raise invalid(f"ensemble inputs must be a subset of {sorted(allowed)}")
    stacked = np.vstack(list(columns.values()))
    present = ~np.isnan(stacked)
    total = present.sum(axis=0)
    score = np.where(total > 0, np.nansum(stacked, axis=0) / np.maximum(total, 1), np.nan)
    return {"score": score, "coverage": total / len(allowed)}


_POSITIVE = ("beat", "growth", "record", "upgrade", "strong", "profit")
_NEGATIVE = ("miss", "loss", "downgrade", "weak", "lawsuit", "decline")


def _sentiment(texts: list[str]) -> dict[str, np.ndarray]:
    rows = []
    for text in texts:
        words = text.lower()
        pos = sum(w in words for w in _POSITIVE)
        neg = sum(w in words for w in _NEGATIVE)
        logits = np.array([neg, 0.5, pos], dtype=np.float64)
        rows.append(np.exp(logits) / np.exp(logits).sum())
    matrix = np.vstack(rows) if rows else np.zeros((0, 3))
    return {"negative": matrix[:, 0], "neutral": matrix[:, 1], "positive": matrix[:, 2]}


def _export_versions(names: list[str], version: str) -> None:
    """``portfolio_os_model_info`` on ``/metrics``, as serving/metrics.py exports it (the gateway reads it)."""
    from prometheus_client import Gauge

    info = Gauge("portfolio_os_model_info", "Always 1; the labels name the version being served.", ["model", "version"])
    for name in names:
        if not name.endswith("-explain"):
            info.labels(model=name, version=version).set(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http_port", type=int, required=True)
    parser.add_argument("--models", required=True, help="comma-separated model names")
    parser.add_argument("--version", default="1")
    parser.add_argument("--delay_s", type=float, default=0.0)
    args, _ = parser.parse_known_args()

    import kserve.model_server
    import kserve.protocol.rest.server as rest_server
    from kserve import ModelServer

    class LoopbackRESTServer(rest_server.RESTServer):  # type: ignore[misc]
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.config.host = "127.0.0.1"  # never 0.0.0.0 in tests

    kserve.model_server.RESTServer = LoopbackRESTServer
    models = build_models(args.models.split(","), args.version, args.delay_s)
    _export_versions(args.models.split(","), args.version)
    for model in models:
        model.load()
    ModelServer(http_port=args.http_port, enable_grpc=False, workers=1).start(models)


if __name__ == "__main__":
    main()
