"""The promotion gate, rollback and audit log against a real MLflow on SQLite, and the ensemble rules."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from training.audit import AuditLog, AuditLogCorrupt
from training.errors import TrainingError
from training.models.blend import blend
from training.models.ensemble import fit_common_scale, trailing_weights, weights_from_ic
from training.registry.config import RegistryConfig
from training.registry.model_registry import ModelRegistry, RunRecord

FEATURES = ["f1", "f2", "f3"]


def _booster(seed: int) -> lgb.Booster:
    # Synthetic rows: the gate only needs real boosters to log, not a meaningful signal.
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(200, 3)), columns=FEATURES)
    y = (X["f1"] + rng.normal(size=200) > 0).astype(int)
    params = {"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": seed}
    return lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=5)


def _record(name: str = "technical") -> RunRecord:
    return RunRecord(
        name=name,
        params={"num_leaves": 7},
        metrics={"test_rank_ic_mean": 0.01},
        tags={"feature_service": "technical_model_v1", "horizon": "21", "snapshot_hash": "0" * 64, "code_version": "t"},
        card="# card",
    )


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    # One MLflow database per module: creating its schema costs seconds; tests use distinct names.
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def registry(tracking_uri: str, tmp_path: Path) -> ModelRegistry:
    reg = ModelRegistry(tracking_uri, RegistryConfig(promotion_margin=0.01), AuditLog(tmp_path / "audit.jsonl"))
    reg.check_reachable()
    return reg


def test_gate_promotes_first_then_only_a_clear_improvement_and_rolls_back(registry: ModelRegistry) -> None:
    v1 = registry.log_signal_model(_record(), _booster(1), FEATURES, [0.02, 0.01])
    first = registry.promote_if_better("technical", v1, 0.010, None)
    assert first.promoted and "no champion yet" in first.reason
    v2 = registry.log_signal_model(_record(), _booster(2), FEATURES, [0.0])
    within_margin = registry.promote_if_better("technical", v2, 0.015, 0.010)
    assert not within_margin.promoted and registry.champion_version("technical") == v1
    v3 = registry.log_signal_model(_record(), _booster(3), FEATURES, [0.0])
    better = registry.promote_if_better("technical", v3, 0.030, 0.010)
    assert better.promoted and better.champion_before == v1
    assert registry.champion_version("technical") == v3
    back = registry.rollback("technical", reason="underperformed over its first sessions")
    assert back.version == v1 and registry.champion_version("technical") == v1
    assert str(registry.client.get_model_version_by_alias("technical", "challenger").version) == v3
    events = [r["event"] for r in registry.audit.records()]
    assert events == ["registered", "promoted", "registered", "kept_champion", "registered", "promoted", "rolled_back"]
    assert registry.audit.verify() == 7


def test_rollback_without_history_is_refused(registry: ModelRegistry) -> None:
    v1 = registry.log_signal_model(_record("lonely"), _booster(1), FEATURES, [])
    registry.promote_if_better("lonely", v1, 0.0, None)
    with pytest.raises(TrainingError, match="no earlier champion"):
        registry.rollback("lonely", reason="test")


def test_a_failed_alias_leaves_no_version_behind(registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    registry.log_signal_model(_record("fragile"), _booster(1), FEATURES, [])

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("registry went away mid-registration")  # injected fault, real MLflow otherwise

    monkeypatch.setattr(registry.client, "set_registered_model_alias", refuse)
    with pytest.raises(RuntimeError, match="mid-registration"):
        registry.log_signal_model(_record("fragile"), _booster(2), FEATURES, [])
    versions = [str(v.version) for v in registry.client.search_model_versions("name='fragile'")]
    assert versions == ["1"]
    assert [r["event"] for r in registry.audit.records()] == ["registered"]


def test_ensemble_pyfunc_blends_exactly_like_training(registry: ModelRegistry) -> None:
    import mlflow

    weights = {"technical": 0.6, "fundamental": 0.4}
    version = registry.log_ensemble(_record("ensemble"), weights)
    model = mlflow.pyfunc.load_model(f"models:/ensemble/{version}")
    rows = pd.DataFrame({"technical": [0.7, 0.2, np.nan], "fundamental": [0.5, np.nan, np.nan]})
    served = model.predict(rows)
    expected = blend(rows, weights)
    np.testing.assert_allclose(served["score"], expected["score"])
    np.testing.assert_allclose(served["coverage"], [1.0, 0.6, 0.0])
    assert served["score"].iloc[1] == pytest.approx(0.2)  # renormalised over the component present
    only_one = model.predict(pd.DataFrame({"technical": [0.3]}))
    assert only_one["score"].iloc[0] == pytest.approx(0.3) and only_one["coverage"].iloc[0] == pytest.approx(0.6)


def test_ensemble_pyfunc_maps_components_to_the_common_scale_before_blending(registry: ModelRegistry) -> None:
    import mlflow

    weights = {"technical": 0.5, "fundamental": 0.5}
    # fundamental answers in other units (say a LambdaRank score): 100x the spread, centred at 0
    rng = np.random.default_rng(0)
    oof = pd.DataFrame({"technical": 0.5 + 0.01 * rng.standard_normal(500), "fundamental": rng.standard_normal(500)})
    affine = fit_common_scale(oof)
    version = registry.log_ensemble(_record("ensemble"), weights, affine)
    model = mlflow.pyfunc.load_model(f"models:/ensemble/{version}")
    one_sd_up = oof.mean() + oof.std(ddof=0)
    rows = pd.DataFrame(
        {"technical": [one_sd_up["technical"], np.nan], "fundamental": [np.nan, one_sd_up["fundamental"]]}
    )
    served = model.predict(rows)
    np.testing.assert_allclose(served["score"], blend(rows, weights, affine)["score"])
    # one standard deviation above its own mean gives the same blended score whichever component
    # answered, where the raw scores (about 0.51 and 1.0) would not
    assert served["score"].iloc[0] == pytest.approx(served["score"].iloc[1], abs=1e-9)


def test_common_scale_is_near_identity_for_components_that_share_a_scale() -> None:
    rng = np.random.default_rng(1)
    oof = pd.DataFrame({"a": 0.5 + 0.1 * rng.standard_normal(5000), "b": 0.5 + 0.1 * rng.standard_normal(5000)})
    for shift, scale in fit_common_scale(oof).values():
        assert scale == pytest.approx(1.0, abs=0.03) and shift == pytest.approx(0.0, abs=0.02)
    with pytest.raises(TrainingError, match="'c' has no out-of-sample score"):
        fit_common_scale(pd.DataFrame({"c": [np.nan, np.nan]}))


def test_audit_log_detects_an_edited_line(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append("registered", model="m", version="1")
    log.append("promoted", model="m", version="1")
    assert log.verify() == 2
    lines = log.path.read_text().splitlines()
    edited = json.loads(lines[0]) | {"version": "9"}
    log.path.write_text(json.dumps(edited) + "\n" + lines[1] + "\n")
    with pytest.raises(AuditLogCorrupt, match="line 1 was altered"):
        log.verify()
    log.path.write_text(lines[1] + "\n")
    with pytest.raises(AuditLogCorrupt, match="line 1 does not follow"):
        log.verify()


def test_weights_fall_back_to_equal_without_positive_ic() -> None:
    w = weights_from_ic({"a": -0.02, "b": float("nan")})
    assert w.fallback_equal and w.weights == {"a": 0.5, "b": 0.5}
    w = weights_from_ic({"a": 0.03, "b": 0.01, "c": -0.5})
    assert not w.fallback_equal and w.weights == pytest.approx({"a": 0.75, "b": 0.25, "c": 0.0})


def test_trailing_weights_never_see_an_outcome_before_it_is_known() -> None:
    # Synthetic panel: 60 dates x 8 names; each date's outcome is known 5 dates later.
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2020-01-01", periods=60)
    d = np.repeat(dates, 8)
    known = np.repeat(dates.shift(5), 8)
    target = rng.normal(size=d.size)
    comps = pd.DataFrame({"good": target + rng.normal(size=d.size), "noise": rng.normal(size=d.size)})
    base = trailing_weights(comps, pd.Series(target), pd.Series(d), pd.Series(known), window=20)
    assert base["good"].iloc[-1] > 0.7  # the informative component earns the weight
    cut = 30
    # Scramble every outcome known at or after dates[cut]: weights up to dates[cut] must not move.
    scrambled = target.copy()
    late = known >= dates[cut]
    scrambled[late] = rng.normal(size=int(late.sum()))
    again = trailing_weights(comps, pd.Series(scrambled), pd.Series(d), pd.Series(known), window=20)
    pd.testing.assert_frame_equal(base.loc[: dates[cut]], again.loc[: dates[cut]])
    assert not base.loc[dates[cut + 6] :].equals(again.loc[dates[cut + 6] :])


def test_register_and_gate_scores_the_champion_on_the_same_data_then_registers_and_gates(
    registry: ModelRegistry,
) -> None:
    from training.registry.gate import Challenger, register_and_gate

    scored: list[str] = []

    def log(reg: ModelRegistry, record: RunRecord) -> str:
        return reg.log_signal_model(record, _booster(len(scored) + 1), FEATURES, [])

    def champion_score(figure: float | None) -> Challenger:
        def score(reg: ModelRegistry, version: str) -> float | None:
            scored.append(version)
            return figure

        return Challenger(_record("gated"), log, 0.02, score)

    first = register_and_gate(registry, champion_score(0.5))
    assert first.promoted and "no champion yet" in first.reason and scored == []  # nothing to score
    assert first.describe() == f"gated v{first.version}: champion ({first.reason})"
    kept = register_and_gate(registry, champion_score(0.5))
    assert not kept.promoted and scored == [first.version]  # the champion before this registration
    assert kept.describe().startswith(f"gated v{kept.version}: challenger only (does not beat champion v")
    unscorable = register_and_gate(registry, champion_score(None))
    assert unscorable.promoted and "could not be scored" in unscorable.reason
    assert registry.champion_version("gated") == unscorable.version


def test_a_champion_that_fails_to_score_registers_nothing(registry: ModelRegistry) -> None:
    from training.registry.gate import Challenger, register_and_gate

    first = register_and_gate(
        registry,
        Challenger(_record("strict"), lambda r, rec: r.log_signal_model(rec, _booster(1), FEATURES, []), 0.1, _none),
    )

    def broken(reg: ModelRegistry, version: str) -> float | None:
        raise TrainingError(f"champion v{version} cannot be loaded")

    def never(reg: ModelRegistry, record: RunRecord) -> str:
        raise AssertionError("the challenger must not be registered when the champion cannot be scored")

    with pytest.raises(TrainingError, match=f"champion v{first.version} cannot be loaded"):
        register_and_gate(registry, Challenger(_record("strict"), never, 0.2, broken))
    assert registry.champion_version("strict") == first.version


def _none(reg: ModelRegistry, version: str) -> float | None:
    return None
