"""The ``signals:`` section of a run configuration: loading, refusals, and history checks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from feature_repo.definitions import ALLOCATOR_FEATURES, ALLOCATOR_SERVICE, MODEL_SERVICES
from training.config import load_config
from training.errors import TrainingError
from training.registry.config import RegistryConfig
from training.signals.config import SignalRunConfig, check_history, check_universe, service_features

ROOT = Path(__file__).resolve().parents[1]

SIGNALS = {
    "universe": ["AAPL", "MSFT", "JPM"],
    "segments": {
        "train": ["2010-01-01", "2016-12-31"],
        "valid": ["2017-01-01", "2018-12-31"],
        "test": ["2019-01-01", "2020-12-31"],
    },
    "walk_forward": {"n_folds": 3, "min_train_sessions": 252, "test_sessions": 126, "embargo_sessions": 5},
    "models": {"technical": {"feature_service": "technical_model_v1"}},
}


def write_run(tmp_path: Path, **overrides: object) -> Path:
    """A run config with a valid signals section, ``overrides`` replacing top-level signal keys."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "signals": SIGNALS | overrides}))
    return path


def refused(path: Path) -> str:
    with pytest.raises(TrainingError) as info:
        load_config(path)
    return str(info.value)


def signals(**overrides: object) -> SignalRunConfig:
    return SignalRunConfig.model_validate(SIGNALS | overrides)


def business_days(start: str, end: str) -> pd.DatetimeIndex:
    return pd.bdate_range(start, end)


def test_demo_config_loads_with_only_the_technical_model_enabled() -> None:
    config = load_config(ROOT / "configs" / "demo.yaml")
    assert config.signals is not None
    run = config.signals
    assert run.universe == "all" and run.benchmark == "SP500" and run.horizon == 21
    assert list(run.enabled_models) == ["technical"]
    assert set(run.models) == {"technical", "fundamental", "sentiment_signal"}
    assert run.segments.train[1] < run.segments.valid[0] <= run.segments.valid[1] < run.segments.test[0]
    assert str(run.segments.test[1]) == "2022-12-28"
    assert config.registry.resolve_tracking_uri(Path("/tmp/d")) == "sqlite:////tmp/d/mlflow.db"


def test_demo_segments_fit_the_bundled_sample(sp500) -> None:
    config = load_config(ROOT / "configs" / "demo.yaml")
    assert config.signals is not None
    check_history(config.signals, pd.DatetimeIndex(sp500.prices["date"].unique()))
    check_universe(config.signals, set(sp500.prices["ticker"]), set(sp500.benchmark["symbol"]))


def test_a_config_without_signals_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("name: t\n")
    assert load_config(path).signals is None


def test_defaults_and_derived_values() -> None:
    run = signals()
    assert run.universe == ("AAPL", "MSFT", "JPM")
    assert run.costs.bps_per_side == 10 and run.costs.slippage_bps == 0
    assert run.costs.per_side_fraction == pytest.approx(0.001)
    assert (run.tuning.num_samples, run.tuning.max_concurrent_trials, run.tuning.seed) == (8, 2, 0)
    registry = RegistryConfig()
    assert registry.champion_alias == "champion" and registry.challenger_alias == "challenger"
    assert registry.resolve_tracking_uri(Path("/x")) == "sqlite:////x/mlflow.db"
    assert run.models["technical"].feature_names == service_features("technical_model_v1")
    assert "ret_21d_csz" in run.models["technical"].feature_names


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        (
            {
                "train": ["2010-01-01", "2017-06-30"],
                "valid": ["2017-01-01", "2018-12-31"],
                "test": ["2019-01-01", "2020-12-31"],
            },
            "segments 'train' (2010-01-01..2017-06-30) and 'valid' (2017-01-01..2018-12-31) overlap",
        ),
        (
            {
                "train": ["2010-01-01", "2016-12-31"],
                "valid": ["2018-12-31", "2017-01-01"],
                "test": ["2019-01-01", "2020-12-31"],
            },
            "segment 'valid' is empty",
        ),
        (
            {
                "train": ["2010-01-01", "2016-12-31"],
                "valid": ["2019-01-01", "2019-12-31"],
                "test": ["2017-01-01", "2018-12-31"],
            },
            "segment 'test' (2017-01-01..2018-12-31) starts before segment 'valid'",
        ),
    ],
    ids=["overlap", "empty", "unordered"],
)
def test_bad_segments_are_refused_naming_the_segment(tmp_path: Path, segments: dict, expected: str) -> None:
    message = refused(write_run(tmp_path, segments=segments))
    assert "signals.segments" in message
    assert expected in message


def test_a_missing_segment_is_named(tmp_path: Path) -> None:
    message = refused(write_run(tmp_path, segments={"train": ["2010-01-01", "2016-12-31"]}))
    assert "signals.segments.valid: Field required" in message
    assert "signals.segments.test: Field required" in message


def test_unknown_feature_service_is_named_with_the_valid_ones(tmp_path: Path) -> None:
    message = refused(write_run(tmp_path, models={"m": {"feature_service": "technical_model_v9"}}))
    assert "signals.models.m.feature_service" in message
    assert "unknown feature service 'technical_model_v9'" in message
    for service in (*MODEL_SERVICES, ALLOCATOR_SERVICE):
        assert service in message


def test_unknown_feature_is_named_with_a_suggestion(tmp_path: Path) -> None:
    models = {"technical": {"feature_service": "technical_model_v1", "features": ["ret_21d", "ret_22d"]}}
    message = refused(write_run(tmp_path, models=models))
    assert "signals.models.technical" in message
    assert "unknown feature 'ret_22d'" in message
    assert "not served by 'technical_model_v1'" in message
    assert "did you mean" in message and "ret_21d" in message


def test_a_feature_of_another_service_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown feature 'earnings_yield'"):
        signals(models={"t": {"feature_service": "technical_model_v1", "features": ["earnings_yield"]}})


def test_allocator_service_serves_only_its_subset() -> None:
    run = signals(models={"a": {"feature_service": ALLOCATOR_SERVICE, "features": ["vol_63d", "beta_252d"]}})
    assert run.models["a"].feature_names == ("vol_63d", "beta_252d")
    assert service_features(ALLOCATOR_SERVICE) == ALLOCATOR_FEATURES
    with pytest.raises(ValueError, match="unknown feature 'rsi_14'"):
        signals(models={"a": {"feature_service": ALLOCATOR_SERVICE, "features": ["rsi_14"]}})


def test_feature_subset_must_not_repeat_or_be_empty() -> None:
    with pytest.raises(ValueError, match="listed twice: ret_21d"):
        signals(models={"t": {"feature_service": "technical_model_v1", "features": ["ret_21d", "ret_21d"]}})
    with pytest.raises(ValueError, match="at least 1 item"):
        signals(models={"t": {"feature_service": "technical_model_v1", "features": []}})


def test_every_model_disabled_is_refused(tmp_path: Path) -> None:
    message = refused(write_run(tmp_path, models={"t": {"feature_service": "technical_model_v1", "enabled": False}}))
    assert "every model is disabled (t)" in message


@pytest.mark.parametrize("key", ["bps_per_side", "slippage_bps"])
def test_negative_costs_are_refused(tmp_path: Path, key: str) -> None:
    message = refused(write_run(tmp_path, costs={key: -1}))
    assert f"signals.costs.{key}: Input should be greater than or equal to 0" in message


@pytest.mark.parametrize("horizon", [0, 253, -5])
def test_horizon_out_of_range_is_refused(tmp_path: Path, horizon: int) -> None:
    message = refused(write_run(tmp_path, horizon=horizon))
    assert "signals.horizon" in message


def test_horizon_bounds_are_inclusive() -> None:
    assert signals(horizon=1).horizon == 1
    assert signals(horizon=252).horizon == 252


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"learning_rate": 0.1}, "signals.learning_rate: Extra inputs are not permitted"),
        ({"costs": {"bps": 5}}, "signals.costs.bps: Extra inputs are not permitted"),
        ({"tuning": {"samples": 4}}, "signals.tuning.samples: Extra inputs are not permitted"),
        ({"walk_forward": {"folds": 4}}, "signals.walk_forward.folds: Extra inputs are not permitted"),
        (
            {"models": {"t": {"feature_service": "technical_model_v1", "params": {}}}},
            "signals.models.t.params: Extra inputs are not permitted",
        ),
    ],
)
def test_unknown_keys_are_refused_by_path(tmp_path: Path, overrides: dict, where: str) -> None:
    assert where in refused(write_run(tmp_path, **overrides))


def test_tuning_and_registry_consistency() -> None:
    with pytest.raises(ValueError, match=r"grace_period \(20\) exceeds max_t \(10\)"):
        signals(tuning={"grace_period": 20, "max_t": 10})
    with pytest.raises(ValueError, match="both 'prod'"):
        RegistryConfig(champion_alias="prod", challenger_alias="prod")
    with pytest.raises(ValueError, match="reserved by MLflow"):
        RegistryConfig(champion_alias="latest")
    with pytest.raises(ValueError, match="promotion_margin"):
        RegistryConfig(promotion_margin=-0.01)
    assert RegistryConfig(tracking_uri="http://mlflow:5000").resolve_tracking_uri(Path("/x")) == "http://mlflow:5000"


def test_registry_is_a_top_level_section(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "signals": SIGNALS, "registry": {"promotion_margin": 0.02}}))
    assert load_config(path).registry.promotion_margin == 0.02
    with pytest.raises(ValueError, match="registry\n  Extra inputs are not permitted"):
        signals(registry={"promotion_margin": 0.02})  # the signals section alone no longer holds it


def test_the_old_signals_registry_location_still_loads_with_a_warning_naming_the_new_key(tmp_path: Path) -> None:
    path = write_run(tmp_path, registry={"promotion_margin": 0.03, "champion_alias": "prod"})
    with pytest.warns(
        FutureWarning, match=r"run\.yaml: 'signals.registry' is deprecated: move it to the top-level 'registry'"
    ):
        config = load_config(path)
    assert config.registry.promotion_margin == 0.03 and config.registry.champion_alias == "prod"
    assert config.signals is not None and config.signals.models["technical"].enabled


def test_registry_in_both_places_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    raw = {"name": "t", "signals": SIGNALS | {"registry": {}}, "registry": {"promotion_margin": 0.0}}
    path.write_text(yaml.safe_dump(raw))
    assert "'registry' is set twice" in refused(path)


def test_the_shipped_configs_use_the_top_level_registry() -> None:
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        assert "registry" not in (yaml.safe_load(path.read_text()).get("signals") or {}), path.name


def test_universe_refuses_duplicates_and_empty_lists() -> None:
    with pytest.raises(ValueError, match="listed twice in universe: AAPL"):
        signals(universe=["AAPL", "MSFT", "AAPL"])
    with pytest.raises(ValueError, match="universe is empty"):
        signals(universe=[])
    assert signals(universe="all").universe == "all"


def test_check_history_passes_when_the_data_covers_the_segments() -> None:
    check_history(signals(), business_days("2009-01-01", "2021-06-30"))


def test_check_history_refuses_segments_outside_the_data() -> None:
    sessions = business_days("2012-01-02", "2020-12-31")
    with pytest.raises(TrainingError) as info:
        check_history(signals(), sessions)
    message = str(info.value)
    assert f"universe has {len(sessions)} sessions between 2012-01-02 and 2020-12-31" in message
    assert "the segments need 2010-01-01..2020-12-31" in message

    with pytest.raises(TrainingError, match=r"the segments need 2010-01-01\.\.2020-12-31"):
        check_history(signals(), business_days("2009-01-01", "2020-06-30"))
    with pytest.raises(TrainingError, match="universe has 0 sessions"):
        check_history(signals(), pd.DatetimeIndex([]))


def test_check_history_refuses_a_segment_too_short_for_the_horizon() -> None:
    segments = {
        "train": ["2010-01-01", "2016-12-31"],
        "valid": ["2017-01-01", "2017-01-31"],
        "test": ["2019-01-01", "2020-12-31"],
    }
    with pytest.raises(TrainingError) as info:
        check_history(signals(segments=segments), business_days("2009-01-01", "2021-06-30"))
    message = str(info.value)
    assert "more than horizon 21 + embargo_sessions 5 = 26 sessions in segment 'valid'" in message
    assert "which holds 22" in message


def test_check_history_refuses_walk_forward_that_needs_more_history() -> None:
    run = signals(walk_forward={"n_folds": 10, "min_train_sessions": 1000, "test_sessions": 126})
    with pytest.raises(TrainingError) as info:
        check_history(run, business_days("2009-01-01", "2021-06-30"))
    message = str(info.value)
    assert "walk_forward inside segment 'train' (2010-01-01..2016-12-31)" in message
    assert "folds need 2286" in message  # 1000 + horizon 21 + embargo 5 + 10 x 126


def test_check_history_accepts_time_zone_aware_sessions() -> None:
    check_history(signals(), business_days("2009-01-01", "2021-06-30").tz_localize("UTC"))


def test_check_universe_names_missing_tickers_and_benchmark() -> None:
    with pytest.raises(TrainingError, match="universe tickers not in the data: JPM"):
        check_universe(signals(), {"AAPL", "MSFT"}, {"SP500"})
    with pytest.raises(TrainingError, match=r"benchmark 'SP500' is not in the data \(it holds: GSPC.INDX\)"):
        check_universe(signals(), {"AAPL", "MSFT", "JPM"}, {"GSPC.INDX"})
    check_universe(signals(universe="all"), set(), {"SP500"})
