"""The ``registry:`` section of a run configuration: where runs are tracked, how a champion is chosen and guarded.

It serves every model family (the signal models, the ensemble, the allocator and the text model).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from feature_repo.contract import CHALLENGER, CHAMPION

_ALIAS_PATTERN = r"^[A-Za-z0-9_-]{1,255}$"
LEGACY_KEY: Final = "signals.registry"
DEPRECATED: Final = (
    "'signals.registry' is deprecated: move it to the top-level 'registry' key "
    "(the registry settings serve every model family, not only the signal models)"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegistryConfig(_Strict):
    """Where runs are tracked and how a challenger becomes the champion."""

    tracking_uri: str | None = Field(
        None, min_length=1, description="MLflow tracking URI; None means a local SQLite file under the data folder."
    )
    promotion_margin: float = Field(
        0.0, ge=0, description="How much higher the challenger's rank IC must be to replace the champion."
    )
    champion_alias: str = Field(CHAMPION, pattern=_ALIAS_PATTERN)
    challenger_alias: str = Field(CHALLENGER, pattern=_ALIAS_PATTERN)
    guard_sessions: int = Field(
        63, ge=1, description="Dates of known outcomes after a new champion's data before the guard judges it."
    )
    guard_margin: float = Field(
        0.0, ge=0, description="Live rank IC a new champion may trail the one it replaced by before it is rolled back."
    )

    @field_validator("champion_alias", "challenger_alias")
    @classmethod
    def _alias_mlflow_accepts(cls, value: str) -> str:
        # MLflow reserves "latest" and version-like aliases ("v3") for its own references.
        if value.lower() == "latest" or re.fullmatch(r"[vV]\d+", value):
            raise ValueError(f"'{value}' is reserved by MLflow; pick another alias")
        return value

    @model_validator(mode="after")
    def _distinct_aliases(self) -> Self:
        if self.champion_alias == self.challenger_alias:
            raise ValueError(f"champion_alias and challenger_alias are both '{self.champion_alias}'")
        return self

    def resolve_tracking_uri(self, data_dir: Path) -> str:
        """The tracking URI to use: the configured one, or ``sqlite:///<data_dir>/mlflow.db``."""
        if self.tracking_uri is not None:
            return self.tracking_uri
        return f"sqlite:///{(data_dir / 'mlflow.db').resolve()}"


def lift_legacy_registry(raw: Any) -> Any:
    """A raw run configuration with a ``signals.registry`` block moved to the top-level ``registry`` key.

    Configurations written before the registry served every family keep working: the block is
    moved and a FutureWarning (shown to users by default) names the new key.

    Raises:
        ValueError: both keys are set, so which one applies would be a guess.
    """
    if not isinstance(raw, Mapping):
        return raw
    signals = raw.get("signals")
    if not isinstance(signals, Mapping) or "registry" not in signals:
        return raw
    if raw.get("registry") is not None:
        raise ValueError(
            f"'registry' is set twice: at the top level and as {LEGACY_KEY} (deprecated); keep the top level"
        )
    warnings.warn(DEPRECATED, FutureWarning, stacklevel=2)
    rest = {k: v for k, v in signals.items() if k != "registry"}
    return {**raw, "signals": rest, "registry": signals["registry"]}
