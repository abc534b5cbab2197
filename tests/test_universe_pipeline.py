"""A universe rule through the real command line: train and allocate on a SYNTHETIC universe.

Wiring only (smoke-sized tuning and RL); every figure is synthetic and the run says so.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.run_configs import run_yaml, smoke_signals, synthetic_run
from tests.test_pipeline_cli import cli, write_config
from training.store import OfflineStore

CONFIG = run_yaml(
    synthetic_run(
        "synthetic-universe-rule",
        n_tickers=40,
        n_months=36,
        seed=3,
        signals=smoke_signals(
            ("2022-06-01", "2023-09-29"),
            ("2023-10-02", "2024-03-28"),
            ("2024-04-01", "2024-12-31"),
            universe={
                "rule": "liquidity",
                "top_n": 20,
                "lookback_sessions": 20,
                "min_price": 0.05,
                "min_history_sessions": 60,
            },
        ),
        allocation={"lookback": 60, "rl": {"smoke_test": True, "num_samples": 1, "algorithms": ["ppo"]}},
    )
)


@pytest.mark.slow
def test_a_universe_rule_runs_train_and_allocate_and_reruns_idempotently(tmp_path: Path) -> None:
    config = write_config(tmp_path / "run.yaml", CONFIG)
    data = tmp_path / "data"
    stages = "ingest,features,apply,train,allocate"
    first = cli("run", "--stages", stages, "--config", str(config), data_dir=data, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    summary = r"universe (\S+): (\d+) reconstitution\(s\), 20\.\.20 members, (\d+) ticker\(s\) ever"
    line = re.search(summary, first.stdout)
    assert line is not None, first.stdout[-3000:]
    ever = int(line.group(3))
    assert 20 < ever < 40
    # The allocation panel holds every ever-member of its window, not only names with every close.
    panel = re.search(r"panel: (\d+) tickers x", first.stdout)
    assert panel is not None and 20 < int(panel.group(1)) <= ever
    with OfflineStore(data / "offline.duckdb", read_only=True) as store:
        rows = store.read("universe_membership", "universe = ?", [line.group(1)])
    assert len(rows) == 20 * int(line.group(2))
    again = cli("run", "--stages", "train", "--config", str(config), data_dir=data, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "stored 0 new, 0 changed, 0 removed" in again.stdout
