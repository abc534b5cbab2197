"""Drift on predictions with the real Evidently: a shifted score distribution is flagged, a stable one is not.

SYNTHETIC predictions log (a test fixture, no quality figure).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from monitoring.drift import PREDICTIONS_VIEW, run_predictions


def _log(shift: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2021-01-04", periods=200)
    rows = []
    for i, day in enumerate(dates):
        for t in range(20):
            moved = shift if i >= 150 else 0.0
            rows.append((day, f"T{t:02d}", "technical", float(np.clip(rng.normal(0.5 + moved, 0.05), 0, 1))))
            rows.append((day, f"T{t:02d}", "fundamental", float(np.clip(rng.normal(0.5, 0.05), 0, 1))))
            if i >= 100:  # the ensemble only scores the later dates
                rows.append((day, f"T{t:02d}", "ensemble", float(rng.normal(0.5, 0.05))))
    return pd.DataFrame(rows, columns=["date", "ticker", "model", "score"])


def test_a_shifted_model_is_flagged_and_the_stable_one_is_not(tmp_path: Path) -> None:
    result = run_predictions(_log(shift=0.1), current_sessions=50, reports_dir=tmp_path, drift_share=0.5)
    verdict = {f.feature: f.detected for f in result.features}
    assert verdict["technical"] is True and verdict["fundamental"] is False
    assert result.n_current == 50 * 20
    summary = json.loads((tmp_path / "drift" / "latest" / f"{PREDICTIONS_VIEW}.json").read_text())
    assert summary["view"] == PREDICTIONS_VIEW


def test_stable_predictions_show_no_drift(tmp_path: Path) -> None:
    result = run_predictions(_log(shift=0.0), current_sessions=50, reports_dir=tmp_path, drift_share=0.5)
    assert not any(f.detected for f in result.features)
    assert not result.detected


def test_cli_reads_the_train_stage_predictions_log_by_default(tmp_path: Path) -> None:
    (tmp_path / "signals").mkdir()
    _log(shift=0.1).to_parquet(tmp_path / "signals" / "predictions.parquet", index=False)
    out = subprocess.run(
        [sys.executable, "-m", "monitoring", "--data-dir", str(tmp_path), "prediction-drift", "--current-sessions=50"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr[-2000:]  # 1 = drift found
    assert "technical: wasserstein" in out.stdout and "drift=True" in out.stdout
    assert "DeprecationWarning" not in out.stderr  # Evidently's import-time notices are silenced


def test_retrain_decisions_are_logged_with_the_figures_they_rest_on(tmp_path: Path) -> None:
    reports_dir = tmp_path / "reports"
    run_predictions(_log(shift=0.1), current_sessions=50, reports_dir=reports_dir, drift_share=0.3)
    out = subprocess.run(
        [sys.executable, "-m", "monitoring", "--data-dir", str(tmp_path), "retrain"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr[-2000:]  # recommended, not launched
    assert "retrain recommended" in out.stdout and "predictions:" in out.stdout
    (entry,) = [json.loads(line) for line in (reports_dir / "retrain_decisions.jsonl").read_text().splitlines()]
    assert entry["recommended"] is True and entry["launched"] is False and entry["exit_code"] is None
    assert entry["drift_detected"] == {PREDICTIONS_VIEW: True}
    assert 0.3 <= entry["drift_share"][PREDICTIONS_VIEW] <= 1.0
