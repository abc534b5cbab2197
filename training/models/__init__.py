"""Model classes: pure fit/predict/save/load, no tracking (the pipeline logs to MLflow, not the model)."""

from __future__ import annotations

from training.models.explain import contributions, top_contributions
from training.models.signal import SignalModel, SignalModelParams

__all__ = ["SignalModel", "SignalModelParams", "contributions", "top_contributions"]
