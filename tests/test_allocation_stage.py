"""The allocate stage end to end on a SYNTHETIC universe: signals, RL on Ray, backtests, tear sheet, registry.

Wiring only: every figure here is synthetic and the run says so; nothing is a quality figure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.run_configs import run_yaml, smoke_signals, synthetic_run
from tests.test_pipeline_cli import cli, write_config

CONFIG = run_yaml(
    synthetic_run(
        "synthetic-allocation",
        n_tickers=24,
        n_months=48,
        seed=5,
        signals=smoke_signals(("2022-06-01", "2024-06-28"), ("2024-07-01", "2025-03-31"), ("2025-04-01", "2025-12-31")),
        allocation={
            "max_weight": 0.25,
            "lookback": 126,
            "validation_windows": 2,
            "topk": {"k": 5, "n_drop": 1},
            "monte_carlo": {"n_paths": 200},
            "rl": {
                "num_samples": 2,
                "timesteps": 512,
                "evaluations": 2,
                "max_concurrent_trials": 2,
                "episode_sessions": 60,
                "net_arch": [16],
                "walk_forward_retrain": True,
            },
        },
    )
)


@pytest.mark.slow
def test_allocate_stage_trains_backtests_reports_and_registers(tmp_path: Path) -> None:
    import mlflow
    import pandas as pd

    config = write_config(tmp_path / "run.yaml", CONFIG)
    data = tmp_path / "data"
    result = cli("demo", "--config", str(config), data_dir=data, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout
    assert "SYNTHETIC data: a wiring check, NOT a quality figure" in out and "REAL data" not in out
    for strategy in ("equal_weight", "inverse_volatility", "min_variance", "max_sharpe", "hrp", "topk_dropout"):
        assert f"\n  {strategy} " in out, strategy
    assert "allocator v1: champion" in out
    assert "was re-trained every 252 sessions of the test segment" in out
    sheets = sorted((data / "reports").glob("allocation-*.html"))
    assert len(sheets) == 1 and sheets[0].stat().st_size > 1_000_000
    html = sheets[0].read_text(encoding="utf-8")
    assert "SYNTHETIC data" in html and "topk_dropout" in html
    uri = f"sqlite:///{data / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.pyfunc.load_model("models:/allocator@champion")
    client = mlflow.tracking.MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version_by_alias("allocator", "champion")
    assert version.tags["feature_service"] == "allocator_v1"
    assert "SYNTHETIC" in version.description and "Verdict" in version.description
    tickers = list(model.model_config["tickers"])[:2]
    rows = pd.DataFrame({"ticker": tickers, "ret_21d": [0.01, -0.02], "vol_63d": [0.2, 0.3]})
    weights = model.predict(rows)["weight"]
    assert (weights >= 0).all() and weights.sum() <= 1.0 + 1e-9 and weights.max() <= 0.25 + 1e-9
    # The train stage's predictions log feeds monitoring's alpha decay with no extra arguments.
    import os
    import subprocess
    import sys

    decay = subprocess.run(
        [sys.executable, "-m", "monitoring", "decay"],
        env=os.environ | {"PORTFOLIO_OS_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert decay.returncode in (0, 1), decay.stderr[-2000:]  # 1 = a model decayed: a finding, not a failure
    assert "technical: rank IC" in decay.stdout and "ensemble: rank IC" in decay.stdout
