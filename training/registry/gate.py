"""The one register-then-gate step every training stage calls, whatever the model family.

A stage hands over a :class:`Challenger`: the run's record (params, metrics, tags, card), how to log
its model (each family logs its own flavour and code), its figure on this run's held-out data, and
how to compute the current champion's figure on the same data. The step scores the champion
first, so a champion that cannot be scored fails before anything is registered, then registers
the challenger (alias ``challenger``) and moves ``champion`` to it only when it beats the champion
by the margin (:meth:`~training.registry.model_registry.ModelRegistry.promote_if_better`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from training.registry.model_registry import ModelRegistry, PromotionDecision, RunRecord


@dataclass(frozen=True)
class Challenger:
    """A trained model ready for the registry.

    Attributes:
        record: what the run logs besides the model; ``record.name`` is the registered name.
        log: logs the model with ``record`` and registers it as the challenger; returns the version.
        score: the challenger's figure on this run's held-out data (higher is better).
        score_champion: the registry's given champion version's figure on the same data; None when it cannot
            be scored there (it is then replaced, as the gate has nothing to compare).
        metric: the figure's name in the audit log (``rank_ic``, ``sharpe``, ``macro_f1``).
        margin: how much the challenger must beat the champion by; None: the configured margin.
    """

    record: RunRecord
    log: Callable[[ModelRegistry, RunRecord], str]
    score: float
    score_champion: Callable[[ModelRegistry, str], float | None]
    metric: str = "rank_ic"
    margin: float | None = None


def register_and_gate(registry: ModelRegistry, challenger: Challenger) -> PromotionDecision:
    """Score the champion, register the challenger, promote it when it beats the champion by the margin."""
    name = challenger.record.name
    champion = registry.champion_version(name)
    champion_score = None if champion is None else challenger.score_champion(registry, champion)
    version = challenger.log(registry, challenger.record)
    return registry.promote_if_better(
        name, version, challenger.score, champion_score, metric=challenger.metric, margin=challenger.margin
    )
