"""The registered allocator model: logged to a real MLflow, loaded back, same weights as the backtest.

The pyfunc's observation and weight code are the environment's own modules, shipped as
``code_paths``; one test loads it in a process where the project cannot be imported, as a model
server without the training package would.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.allocation_fixtures import mlp_policy
from training.allocation.allocator_pyfunc import allocate
from training.allocation.env import EnvConfig, PortfolioEnv
from training.allocation.panel import MarketPanel
from training.allocation.policy import PolicyParams, policy_action
from training.allocation.weights import constrained_target
from training.audit import AuditLog
from training.registry.config import RegistryConfig
from training.registry.model_registry import ModelRegistry, RunRecord

TICKERS = ["AAA", "BBB", "CCC", "DDD"]
FEATURES = ["ret_21d", "vol_21d"]
CONFIG = {"tickers": TICKERS, "features": FEATURES, "max_weight": 0.4, "turnover_cap": None, "allow_cash": True}


def _policy(seed: int = 0) -> PolicyParams:
    return mlp_policy(len(TICKERS) * len(FEATURES) + len(TICKERS) + 1, len(TICKERS) + 1, seed)


def _rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticker": TICKERS,
            "ret_21d": [0.05, -0.02, 0.01, np.nan],
            "vol_21d": [0.2, 0.3, 0.25, 0.22],
            "current_weight": [0.1, 0.2, 0.0, 0.3],
        }
    )


def test_served_weights_equal_the_environment_step_on_the_same_inputs() -> None:
    policy = _policy()
    rows = _rows()
    served = allocate(
        rows, tickers=TICKERS, features=FEATURES, policy=policy, max_weight=0.4, turnover_cap=None, allow_cash=True
    )
    # The same decision through the environment: a one-session panel holding those features.
    features = rows[FEATURES].to_numpy(np.float32)[None]
    panel = MarketPanel(
        np.array(["2024-01-02", "2024-01-03"], dtype="datetime64[D]"),
        tuple(TICKERS),
        np.zeros((2, 4)),
        np.concatenate([features, features]),
        tuple(FEATURES),
        None,
        "SYNTHETIC data: a test",
    )
    env = PortfolioEnv(panel, EnvConfig(window=1, max_weight=0.4, allow_cash=True))
    env.reset(options={"start": 0})
    env._weights = rows["current_weight"].to_numpy(np.float64)  # the book the request says is held
    logits = policy_action(policy, env._observation())
    expected, _ = constrained_target(logits, env._weights, max_weight=0.4, turnover_cap=None, allow_cash=True)
    np.testing.assert_allclose(served["weight"].to_numpy(), expected, atol=1e-12)
    assert served["weight"].max() <= 0.4 + 1e-12 and served["weight"].sum() <= 1.0 + 1e-12


def test_a_subset_request_holds_only_its_tickers_and_unknown_tickers_are_refused() -> None:
    policy = _policy()

    def allocate_rows(rows: pd.DataFrame) -> pd.DataFrame:
        return allocate(
            rows, tickers=TICKERS, features=FEATURES, policy=policy, max_weight=1.0, turnover_cap=None, allow_cash=True
        )

    out = allocate_rows(_rows().iloc[[0, 2]].reset_index(drop=True))
    assert list(out["ticker"]) == ["AAA", "CCC"]
    # The softmax ran over AAA, CCC and cash only: the absent names took nothing.
    assert 0.0 < out["weight"].sum() <= 1.0 and (out["weight"] > 0).all()
    with pytest.raises(ValueError, match=r"\['ZZZ'\] are outside the allocator's trained universe of 4"):
        allocate_rows(pd.DataFrame({"ticker": ["AAA", "ZZZ"]}))
    with pytest.raises(ValueError, match="current_weight must be long-only"):
        allocate_rows(_rows().assign(current_weight=[0.5, 0.5, 0.5, 0.0]))


@pytest.mark.slow
def test_logged_allocator_loads_and_predicts_without_the_project(tmp_path: Path) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = ModelRegistry(uri, RegistryConfig(), AuditLog(tmp_path / "audit.jsonl"))
    registry.check_reachable()
    policy = _policy(1)
    record = RunRecord(
        name="allocator",
        params={"algorithm": "ppo"},
        metrics={"val_sharpe_mean": 0.5},
        tags={"code_version": "t"},
        card="# card",
    )
    version = registry.log_allocator(record, policy.save(tmp_path / "policy.npz"), CONFIG)
    decision = registry.promote_if_better("allocator", version, 0.7, None, metric="sharpe", margin=0.0)
    assert decision.promoted
    loaded = registry.load_allocator_policy(version)
    np.testing.assert_array_equal(loaded.weights[0], policy.weights[0])
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    expected = mlflow.pyfunc.load_model("models:/allocator@champion").predict(_rows())
    direct = allocate(_rows(), policy=policy, **CONFIG)  # type: ignore[arg-type]
    np.testing.assert_allclose(expected["weight"].to_numpy(), direct["weight"].to_numpy(), atol=1e-12)
    # A model server without the training package: block every import of it, then load and predict.
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["training"] = None  # any 'import training...' now raises ImportError
        import mlflow, pandas as pd, numpy as np
        mlflow.set_tracking_uri({uri!r}); mlflow.set_registry_uri({uri!r})
        model = mlflow.pyfunc.load_model("models:/allocator@champion")
        rows = pd.read_json({_rows().to_json()!r})
        print(model.predict(rows)["weight"].round(12).tolist())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    np.testing.assert_allclose(eval(out.stdout.strip().splitlines()[-1]), direct["weight"].to_numpy(), atol=1e-10)
