"""The tuned parameters come from a trial measured on every fold, never from one lucky fold."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from training.signals.tuning import METRIC, _best_of_the_finished


@dataclass
class _Result:
    """The two fields of a Ray Tune result the choice reads."""

    name: str
    folds: int
    rank_ic: float
    error: Exception | None = None
    metrics: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = {METRIC: self.rank_ic, "training_iteration": self.folds}


class _Grid(list[_Result]):
    def get_best_result(self, metric: str, mode: str, scope: str) -> _Result:
        assert (metric, mode, scope) == (METRIC, "max", "last")
        return max(self, key=lambda r: r.metrics[metric])


def test_a_trial_stopped_after_one_fold_cannot_win_over_finished_ones() -> None:
    grid = _Grid([_Result("lucky", 1, 0.20), _Result("steady", 5, 0.08), _Result("weaker", 5, 0.05)])
    assert _best_of_the_finished(grid, max_t=5).name == "steady"


def test_a_failed_trial_does_not_count_as_finished() -> None:
    grid = _Grid([_Result("broken", 5, 0.30, error=RuntimeError("boom")), _Result("steady", 5, 0.08)])
    assert _best_of_the_finished(grid, max_t=5).name == "steady"


def test_when_no_trial_finished_the_best_last_result_is_taken() -> None:
    grid = _Grid([_Result("a", 1, 0.02), _Result("b", 2, 0.06)])
    assert _best_of_the_finished(grid, max_t=5).name == "b"
