"""The context every pipeline stage receives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from feature_repo.settings import FeatureStoreSettings
from training.config import PipelineConfig


@dataclass
class RunContext:
    """What every stage gets: the run configuration, where data lives, and where to print."""

    config: PipelineConfig
    settings: FeatureStoreSettings
    out: TextIO
    progress: bool = True

    @property
    def progress_disabled(self) -> bool | None:
        """tqdm's ``disable``: None shows bars only on a terminal, True hides them."""
        return None if self.progress else True

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)

    @property
    def offline_store_path(self) -> Path:
        return self.data_dir / "offline.duckdb"
