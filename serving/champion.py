"""The version a server serves now, and the background poll that follows its alias.

:class:`Champion` holds one fully loaded, checked version. A poll resolves the alias; when it
points elsewhere, the new version is loaded and checked off to the side, then swapped in with one
reference assignment (atomic under the GIL), so a request sees either the old or the new version,
never a mix. A version that fails its checks is remembered and not retried; a registry that
cannot be reached is retried at the next poll, while the loaded version keeps serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from serving import metrics
from serving.errors import RegistryUnavailable, ServingError
from serving.registry import Registry, VersionRef

log = logging.getLogger(__name__)


class Loaded(Protocol):
    """What a loader returns: a checked version, ready to serve."""

    @property
    def version(self) -> str: ...  # pragma: no cover - protocol

    @property
    def feature_service(self) -> str: ...  # pragma: no cover - protocol

    def close(self) -> None:
        """Release what the version holds on disk (called once, at shutdown)."""


T = TypeVar("T", bound=Loaded)


class Champion(Generic[T]):
    """The loaded version of one registered model, following ``alias``.

    Args:
        model: the KServe model name (the ``model`` label of the metrics).
        registered_name: the MLflow registered model name.
        alias: the alias to serve and follow.
        registry: where to resolve it.
        loader: loads and checks one version; raises a ServingError when it cannot serve.
    """

    def __init__(
        self, model: str, registered_name: str, alias: str, registry: Registry, loader: Callable[[VersionRef], T]
    ) -> None:
        self.model = model
        self.registered_name = registered_name
        self.alias = alias
        self._registry = registry
        self._loader = loader
        self._current: T | None = None
        self._rejected: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        metrics.declare(model)

    @property
    def current(self) -> T:
        """The version serving now. Read it once per request and use that reference throughout."""
        current = self._current
        if current is None:
            raise ServingError(f"{self.model} has no loaded version")
        return current

    @property
    def loaded(self) -> bool:
        """Whether a checked version is loaded."""
        return self._current is not None

    def load_initial(self) -> T:
        """Resolve the alias and load its version; raises a ServingError (nothing to fall back on)."""
        ref = self._registry.resolve(self.registered_name, self.alias)
        self._install(self._loader(ref))
        return self.current

    def _install(self, new: T) -> None:
        old = self._current
        self._current = new
        previous = (old.version, old.feature_service) if old is not None else None
        metrics.serving_version(self.model, new.version, new.feature_service, previous)
        log.info("%s serves %s version %s (%s)", self.model, self.registered_name, new.version, self.alias)

    def poll(self) -> None:
        """One reload attempt; never raises a ServingError (the loaded version keeps serving)."""
        try:
            ref = self._registry.resolve(self.registered_name, self.alias)
        except ServingError as e:
            metrics.MODEL_REGISTRY_ERRORS.labels(model=self.model).inc()
            log.warning("%s keeps serving version %s: %s", self.model, self.current.version, e)
            return
        if ref.version in (self.current.version, self._rejected):
            return
        try:
            new = self._loader(ref)
        except RegistryUnavailable as e:
            metrics.MODEL_REGISTRY_ERRORS.labels(model=self.model).inc()
            log.warning("%s keeps serving version %s, will retry: %s", self.model, self.current.version, e)
            return
        except ServingError as e:
            self._rejected = ref.version
            metrics.MODEL_RELOADS.labels(model=self.model, outcome="failed").inc()
            log.error("%s refuses version %s, keeps serving %s: %s", self.model, ref.version, self.current.version, e)
            return
        self._install(new)
        metrics.MODEL_RELOADS.labels(model=self.model, outcome="success").inc()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.poll()
            except Exception:  # a bug in one poll must not end every later poll; log it whole
                metrics.MODEL_RELOADS.labels(model=self.model, outcome="failed").inc()
                log.exception("%s reload poll failed unexpectedly", self.model)

    def start_polling(self, interval: float) -> None:
        """Poll every ``interval`` seconds in a daemon thread; 0 disables polling."""
        if interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, args=(interval,), name=f"reload-{self.model}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (waits for a poll in progress, at most 5 s), mark not ready, release the version."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        metrics.not_ready(self.model)
        if self._current is not None:
            self._current.close()
