"""What every Portfolio OS ``kserve.Model`` shares: the champion it reads, decoding, metrics, encoding.

A subclass implements :meth:`ChampionModel.compute` only: named float64 columns in (``str`` columns
for the inputs it declares as text), named float64 outputs out, for the version it is handed.
``predict`` reads the champion once per request, so a reload in the middle of a request cannot mix
two versions. A model whose compute takes CPU time (a transformer) runs it off the event loop, so
``/metrics`` and the readiness probes keep answering while it works.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from abc import abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Generic

import numpy as np
from kserve import Model
from kserve.protocol.infer_type import InferRequest, InferResponse

from serving import metrics
from serving.champion import Champion, T
from serving.tensors import NO_TEXT, Columns, columns_from_v1, columns_from_v2, fp64_output


class ChampionModel(Model, Generic[T]):  # type: ignore[misc]  # kserve ships no type hints
    """A KServe model answering with the version its :class:`Champion` holds.

    Args:
        name: the KServe model name (URL path and ``model`` metric label).
        champion: the loaded version, shared with sibling models of the same registered model.

    Attributes:
        text_inputs: the inputs decoded as strings (``BYTES`` tensors); every other input is FP64.
        compute_in_thread: run :meth:`compute` in a thread of the model's own, one request at a
            time (for CPU-bound models: the event loop stays free, and requests queue rather than
            compete for the same cores); otherwise on the event loop (microseconds of work).
    """

    text_inputs: ClassVar[frozenset[str]] = NO_TEXT
    compute_in_thread: ClassVar[bool] = False

    def __init__(self, name: str, champion: Champion[T]) -> None:
        super().__init__(name)
        self.champion = champion
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"compute-{name}") if self.compute_in_thread else None
        )

    def load(self) -> bool:
        """Ready exactly when the champion holds a checked version (it is loaded before the server starts)."""
        self.ready = self.champion.loaded
        return bool(self.ready)

    async def healthy(self) -> bool:
        """Model readiness for ``/v2/models/<name>/ready``."""
        return bool(self.ready) and self.champion.loaded

    def stop(self) -> None:
        """Called by KServe when the model is unloaded at shutdown."""
        self.ready = False
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @abstractmethod
    def compute(self, loaded: T, columns: Columns) -> tuple[int, dict[str, np.ndarray]]:
        """Score ``columns`` with ``loaded``; return the row count and the named FP64 ``[n]`` outputs.

        ``columns`` holds float64 vectors, and ``str`` object vectors for :attr:`text_inputs`.

        Raises:
            BadRequest: the columns do not fit the model (unknown, missing, unequal lengths).
        """

    async def predict(
        self, payload: InferRequest | dict[str, Any], headers: dict[str, str] | None = None
    ) -> InferResponse | dict[str, Any]:
        """Answer a v2 ``InferRequest`` (or a v1 ``{"instances": [...]}`` dict) with the champion's outputs."""
        loaded = self.champion.current
        if isinstance(payload, InferRequest):
            columns = columns_from_v2(payload, self.text_inputs)
        else:
            columns = columns_from_v1(payload, self.text_inputs)
        if self._executor is None:
            rows, outputs, elapsed = self._timed_compute(loaded, columns)
        else:
            loop = asyncio.get_running_loop()
            rows, outputs, elapsed = await loop.run_in_executor(self._executor, self._timed_compute, loaded, columns)
        metrics.MODEL_PREDICT_DURATION.labels(model=self.name, version=loaded.version).observe(elapsed)
        metrics.MODEL_PREDICTIONS.labels(model=self.name, version=loaded.version).inc(rows)
        if isinstance(payload, InferRequest):
            return InferResponse(
                response_id=payload.id or str(uuid.uuid4()),
                model_name=self.name,
                infer_outputs=[fp64_output(name, values) for name, values in outputs.items()],
                model_version=loaded.version,
            )
        return _v1_response(outputs, rows, loaded.version)

    def _timed_compute(self, loaded: T, columns: Columns) -> tuple[int, dict[str, np.ndarray], float]:
        started = time.perf_counter()
        rows, outputs = self.compute(loaded, columns)
        return rows, outputs, time.perf_counter() - started


def _v1_response(outputs: dict[str, np.ndarray], rows: int, version: str) -> dict[str, Any]:
    # One output: a list of numbers (the usual v1 shape); several: one object per row.
    if len(outputs) == 1:
        predictions: list[Any] = next(iter(outputs.values())).tolist()
    else:
        predictions = [{name: float(values[i]) for name, values in outputs.items()} for i in range(rows)]
    return {"predictions": predictions, "model_version": version}
