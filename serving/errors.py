"""The exception root of the model servers and the errors a server start or a request can raise.

Every error a server raises on purpose derives from :class:`ServingError`. :class:`BadRequest` also
derives from KServe's ``InvalidInput``, so KServe's own exception handler answers it with HTTP 400
and the reason as the body: the mapping to HTTP lives in KServe, in one place.
"""

from __future__ import annotations

from kserve.errors import InvalidInput


class ServingError(Exception):
    """Root of every error raised on purpose by the ``serving`` package."""


class RegistryUnavailable(ServingError):
    """The MLflow registry (or its artifact store) could not be reached or read."""


class ModelNotRegistered(ServingError):
    """The registered model or its alias does not exist in a reachable registry."""


class ModelLoadError(ServingError):
    """A registered version exists but cannot be served (wrong flavour, unreadable artifacts)."""


class SignatureMismatch(ModelLoadError):
    """A version's signature or tags disagree with the feature service the server serves."""


class BadRequest(InvalidInput, ServingError):  # type: ignore[misc]  # kserve ships no type hints
    """A request the model cannot score (missing, unknown or malformed inputs): HTTP 400."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        # InvalidInput keeps only ``reason``; Exception.args keeps it for pickling and repr.
        self.args = (reason,)
