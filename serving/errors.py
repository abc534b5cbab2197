"""The exception root of the model servers and the errors a server start or a request can raise.

Every error a server raises on purpose derives from :class:`ServingError`. :class:`BadRequest` also
derives from KServe's ``InvalidInput``, so KServe's own exception handler would answer it with HTTP
400 and the reason as the body; the server's handler answers :meth:`BadRequest.body` instead, which
adds the refusal's :class:`~feature_repo.contract.ErrorCode` when it has one.
"""

from __future__ import annotations

from kserve.errors import InvalidInput

from feature_repo.contract import ERROR_CODE_FIELD, ERROR_REASON_FIELD, ErrorCode


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
    """A request the model cannot score (missing, unknown or malformed inputs): HTTP 400.

    Args:
        reason: what is wrong, for a person (its wording may change).
        code: for a refusal a caller acts on, the code it reads instead of the reason.
    """

    def __init__(self, reason: str, code: ErrorCode | None = None) -> None:
        super().__init__(reason)
        # InvalidInput keeps only ``reason``; Exception.args keeps it for pickling and repr.
        self.args = (reason,)
        self.code = code

    def body(self) -> dict[str, str]:
        """The JSON body of the 400: KServe's ``{"error": reason}``, plus ``"code"`` when there is one."""
        body = {ERROR_REASON_FIELD: str(self)}
        if self.code is not None:
            body[ERROR_CODE_FIELD] = self.code.value
        return body
