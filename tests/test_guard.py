"""The post-promotion guard against a real MLflow on SQLite: waits, keeps, rolls back, audits each check."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from training.audit import AuditLog
from training.registry.config import RegistryConfig
from training.registry.model_registry import ModelRegistry, RunRecord
from training.signals.guard import TAG_DATA_END, LiveRows, check_model

FEATURES = ["f1", "f2"]
DATA_END = "2024-06-28"


def _rows(n_dates: int, seed: int = 0) -> LiveRows:
    """SYNTHETIC live rows: f1 orders the target on every date (a test fixture, not a quality figure)."""
    rng = np.random.default_rng(seed)
    dates = np.repeat(pd.bdate_range("2024-07-01", periods=n_dates).to_numpy(), 20)
    X = pd.DataFrame(rng.normal(size=(dates.size, 2)), columns=FEATURES)
    target = X["f1"].to_numpy() + 0.5 * rng.normal(size=dates.size)
    return LiveRows(X, target, dates)


def _booster(sign: float, seed: int) -> lgb.Booster:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(400, 2)), columns=FEATURES)
    y = (sign * X["f1"] + 0.3 * rng.normal(size=400) > 0).astype(int)
    return lgb.train({"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": seed}, lgb.Dataset(X, y), 10)


def _register(registry: ModelRegistry, booster: lgb.Booster) -> str:
    record = RunRecord(
        name="technical",
        params={},
        metrics={},
        tags={
            "feature_service": "technical_model_v1",
            "horizon": "21",
            "snapshot_hash": "0",
            "code_version": "t",
            TAG_DATA_END: DATA_END,
        },
        card="# card",
    )
    return registry.log_signal_model(record, booster, FEATURES, [])


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    reg = ModelRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", RegistryConfig(), AuditLog(tmp_path / "audit.jsonl"))
    reg.check_reachable()
    return reg


def _promote_good_then(registry: ModelRegistry, second_sign: float) -> tuple[str, str]:
    v1 = _register(registry, _booster(+1.0, 1))
    registry.promote_if_better("technical", v1, 0.01, None)
    v2 = _register(registry, _booster(second_sign, 2))
    registry.promote_if_better("technical", v2, 0.05, 0.01)
    assert registry.champion_version("technical") == v2
    return v1, v2


def test_a_worse_new_champion_waits_for_enough_dates_then_is_rolled_back(registry: ModelRegistry) -> None:
    v1, v2 = _promote_good_then(registry, second_sign=-1.0)  # v2 ranks names backwards
    waiting = check_model(registry, "technical", lambda day: _rows(10), sessions=30, margin=0.0)
    assert waiting.decision == "waiting" and waiting.sessions == 10
    assert registry.champion_version("technical") == v2
    seen: list[pd.Timestamp] = []

    def rows_after(day: pd.Timestamp) -> LiveRows:
        seen.append(day)
        return _rows(40)

    decision = check_model(registry, "technical", rows_after, sessions=30, margin=0.0)
    assert seen == [pd.Timestamp(DATA_END)]  # only outcomes after the version's data were asked for
    assert decision.decision == "rolled_back" and decision.sessions == 30  # its first 30 dates
    assert decision.champion_rank_ic < 0 < decision.previous_rank_ic
    assert registry.champion_version("technical") == v1
    events = [r["event"] for r in registry.audit.records()]
    assert events[-3:] == ["guard_checked", "rolled_back", "guard_checked"]
    last = list(registry.audit.records())[-1]
    assert last["champion_live_rank_ic"] == pytest.approx(decision.champion_rank_ic)
    # Already rolled back: the next check leaves the alias alone.
    again = check_model(registry, "technical", lambda day: _rows(40), sessions=30, margin=0.0)
    assert again.decision == "not_applicable" and registry.champion_version("technical") == v1
    registry.audit.verify()


def test_a_new_champion_as_good_as_the_old_is_kept(registry: ModelRegistry) -> None:
    _, v2 = _promote_good_then(registry, second_sign=+1.0)
    decision = check_model(registry, "technical", lambda day: _rows(40), sessions=30, margin=0.05)
    assert decision.decision == "kept"
    assert registry.champion_version("technical") == v2


def test_without_an_earlier_champion_or_any_outcome_nothing_happens(registry: ModelRegistry) -> None:
    v1 = _register(registry, _booster(+1.0, 1))
    registry.promote_if_better("technical", v1, 0.01, None)
    first = check_model(registry, "technical", lambda day: _rows(40), sessions=30, margin=0.0)
    assert first.decision == "not_applicable"
    v2 = _register(registry, _booster(-1.0, 2))
    registry.promote_if_better("technical", v2, 0.05, 0.01)
    none_yet = check_model(registry, "technical", lambda day: None, sessions=30, margin=0.0)
    assert none_yet.decision == "waiting" and none_yet.sessions == 0
