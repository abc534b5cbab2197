"""The main job through its real command line, as a user runs it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from feature_repo.settings import FeatureStoreSettings
from training.config import load_config
from training.context import RunContext
from training.ingest.bundled import load_sp500
from training.pipeline import run_pipeline
from training.store import OfflineStore

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, data_dir: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PORTFOLIO_OS_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "training", *args, "--no-progress"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_config(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def ingest_in_process(config: Path, data_dir: Path) -> None:
    """The ingest stage in this process: a test's setup, when the command under test is a later one
    (a ``python -m training`` start costs ~15 s of imports on the CI machine)."""
    settings = FeatureStoreSettings(environment="local", data_dir=str(data_dir))
    run_pipeline(
        RunContext(config=load_config(config), settings=settings, out=io.StringIO(), progress=False), ["ingest"]
    )


REAL_SHORT = """
name: test
data: {kind: skfolio, start: 2018-01-01}
online_tickers: [AAPL, MSFT, JPM]
"""


@pytest.mark.slow
def test_demo_runs_every_stage_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path / "run.yaml", REAL_SHORT)
    first = cli("demo", "--config", str(config), data_dir=tmp_path / "data")
    assert first.returncode == 0, first.stderr[-3000:]
    for stage in ("ingest", "health", "features", "apply", "materialize", "online", "Summary"):
        assert stage in first.stdout
    assert "technical_features     full" in first.stdout
    online_block = first.stdout.split("technical_model_v1 online")[1]
    assert "AAPL" in online_block and "MSFT" in online_block and "JPM" in online_block
    assert "missing=0" in first.stdout

    second = cli("demo", "--config", str(config), data_dir=tmp_path / "data")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "0 new, 0 changed" in second.stdout
    assert "technical_features     incremental" in second.stdout
    with OfflineStore(tmp_path / "data" / "offline.duckdb", read_only=True) as store:
        source = load_sp500("2018-01-01")
        assert store.count("prices") == len(source.prices)
        assert list(store.ingest_log()["inserted"]) == [len(source.prices), len(source.benchmark), 0, 0]


def test_single_stage_commands_and_help(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "training", "--help"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    for stage in ("ingest", "health", "features", "apply", "materialize", "online"):
        assert stage in result.stdout


def test_health_failure_exits_non_zero_with_the_table(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "strict.yaml", REAL_SHORT + "health: {outlier_abs_return: 0.08, max_outlier_rows: 0}\n"
    )
    ingest_in_process(config, tmp_path / "d")
    result = cli("health", "--config", str(config), data_dir=tmp_path / "d")
    assert result.returncode == 3
    assert "outlier_returns" in result.stdout and "FAIL" in result.stdout


def test_an_invalid_configuration_names_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bad.yaml", "data: {kind: skfolio, start: not-a-date}\nmaterialise: full\n")
    result = cli("ingest", "--config", str(config), data_dir=tmp_path / "d")
    assert result.returncode == 2
    assert "data.skfolio.start" in result.stderr and "materialise" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_malformed_user_file_is_refused_and_the_store_keeps_its_rows(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text(
        "ticker,date,open,high,low,close,volume\nAAA,2024-01-02,10,11,9,10.5,100\nAAA,2024-01-03,10.5,12,10,11,120\n"
    )
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "ticker,date,open,high,low,close,volume\nAAA,2024-01-04,11,12,10,11.5,100\nAAA,2024-01-05,11,12,10,abc,100\n"
    )
    data = tmp_path / "d"
    ok = write_config(tmp_path / "ok.yaml", f"data: {{kind: files, prices: [{good}]}}\n")
    ingest_in_process(ok, data)
    broken = write_config(tmp_path / "broken.yaml", f"data: {{kind: files, prices: [{good}, {bad}]}}\n")
    result = cli("ingest", "--config", str(broken), data_dir=data)
    assert result.returncode == 2
    assert f"{bad}, row 3, column 'close'" in result.stderr
    with OfflineStore(data / "offline.duckdb", read_only=True) as store:
        assert store.count("prices") == 2


def test_a_synthetic_run_is_flagged_synthetic_everywhere(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "syn.yaml",
        "data: {kind: synthetic, n_tickers: 30, n_months: 14, seed: 1}\nonline_tickers: [AAA]\n",
    )
    result = cli("run", "--stages", "ingest,features", "--config", str(config), data_dir=tmp_path / "d")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SYNTHETIC" in result.stdout
    with OfflineStore(tmp_path / "d" / "offline.duckdb", read_only=True) as store:
        for table in ("prices", "benchmark", "fundamentals", "documents"):
            frame = store.read(table)
            assert len(frame) > 0 and frame["synthetic"].all(), table
    sentiment = pd.read_parquet(tmp_path / "d" / "features" / "sentiment_features.parquet")
    assert sentiment["sent_count_21d"].sum() > 0
