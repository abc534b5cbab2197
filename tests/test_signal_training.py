"""The train stage end to end on the bundled real prices: Ray Tune, MLflow registry, gate, audit, card.

CI-sized: a 2008-2019 slice of the bundled sample, two walk-forward folds and the smoke-test
search (one trial on one fold) with a real local Ray and MLflow on SQLite. The figures printed here
are not quality figures (the budget is too small to mean anything); the real-data evaluation is
what ``make demo`` prints.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from feature_repo.schema import FEATURES_BY_VIEW, names
from tests.run_configs import run_yaml, smoke_signals
from tests.servers import stop_launcher
from tests.test_pipeline_cli import cli, write_config
from training.audit import AuditLog

CONFIG = run_yaml(
    {
        "name": "ci-signals",
        "data": {"kind": "skfolio", "start": "2008-01-01"},
        "online_tickers": ["AAPL", "MSFT"],
        "signals": smoke_signals(
            ("2009-01-01", "2015-12-31"),
            ("2016-01-01", "2017-06-30"),
            ("2017-07-01", "2019-12-31"),
            benchmark="SP500",
            min_train_sessions=504,
            test_sessions=252,
            learning={"objective": "auto", "label": "rank", "seeds": 2, "report_horizons": [5, 21, 63]},
        ),
        "registry": {"tracking_uri": None, "promotion_margin": 0.0},
    }
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("signals")
    config = write_config(root / "run.yaml", CONFIG)
    result = cli("demo", "--config", str(config), data_dir=root / "data", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root / "data", config, result.stdout


def _client(data_dir: Path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri


@pytest.mark.slow
def test_demo_trains_registers_and_prints_the_evaluation_table(trained) -> None:
    data_dir, _, stdout = trained
    for row in ("technical", "ensemble", "momentum_12_1", "reversal_1m", "equal_weight"):
        assert f"\n  {row} " in stdout, row
    assert "technical v1: champion (no champion yet" in stdout
    assert "ensemble v1: champion" in stdout
    # The guard stage ran after train (demo runs every stage): a first champion has nothing to compare with.
    assert "technical: not_applicable (no earlier champion to compare with)" in stdout
    client, _ = _client(data_dir)
    version = client.get_model_version_by_alias("technical", "champion")
    assert client.get_model_version_by_alias("technical", "challenger").version == version.version
    assert version.tags["feature_service"] == "technical_model_v1"
    assert version.tags["horizon"] == "21" and len(version.tags["snapshot_hash"]) == 64
    assert version.tags["code_version"] != ""
    # The card says plainly whether the first champion beat the baselines, whichever way it went.
    assert "beat every baseline" in version.description or "did NOT beat the baselines" in version.description
    assert "survivorship" in version.description


@pytest.mark.slow
def test_the_search_picks_an_objective_and_the_horizons_are_reported(trained) -> None:
    import json

    import mlflow

    data_dir, _, stdout = trained
    client, uri = _client(data_dir)
    version = client.get_model_version_by_alias("technical", "champion")
    assert version.tags["objective"] in ("regression", "lambdarank")
    mlflow.set_tracking_uri(uri)
    assert mlflow.get_run(version.run_id).data.params["n_seeds"] == "2"
    for h in (5, 21, 63):
        assert f"horizon {h:>3}: out-of-fold rank IC" in stdout
    (report,) = sorted((data_dir / "reports").glob("learning-*.json"))[:1]
    entry = json.loads(report.read_text())["technical"]
    assert entry["objective"] == version.tags["objective"] and entry["seeds"] == 2
    assert [h["horizon"] for h in entry["horizons"]] == [5, 21, 63]
    assert all(len(h["fold_rank_ics"]) == 2 for h in entry["horizons"])
    (markdown,) = sorted((data_dir / "reports").glob("signals-*.md"))[:1]
    assert "- 63 sessions: rank IC" in markdown.read_text()


@pytest.mark.slow
def test_registered_signature_is_the_feature_service_order(trained) -> None:
    import mlflow

    data_dir, _, _ = trained
    _, uri = _client(data_dir)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # an earlier test in this process may have pointed it elsewhere
    info = mlflow.models.get_model_info("models:/technical@champion")
    assert info.signature.inputs.input_names() == names(FEATURES_BY_VIEW["technical_features"])
    run = mlflow.get_run(info.run_id)
    assert "test_rank_ic_mean" in run.data.metrics and "cv_rank_ic_mean" in run.data.metrics
    assert {"num_leaves", "learning_rate", "n_estimators"} <= set(run.data.params)


@pytest.mark.slow
def test_a_retrain_that_is_no_better_stays_challenger(trained) -> None:
    data_dir, config, _ = trained
    again = cli("train", "--config", str(config), data_dir=data_dir, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    # Same data, same seed: the same model, the same score, so a margin of 0 is not beaten.
    assert "technical v2: challenger only (does not beat champion v1" in again.stdout
    client, _ = _client(data_dir)
    assert str(client.get_model_version_by_alias("technical", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("technical", "challenger").version) == "2"
    audit = AuditLog(data_dir / "registry_audit.jsonl")
    assert audit.verify() >= 6
    events = [(r["event"], r["model"], r["version"]) for r in audit.records()]
    assert ("promoted", "technical", "1") in events and ("kept_champion", "technical", "2") in events


@pytest.mark.slow
def test_unreachable_registry_fails_before_training_and_registers_nothing(trained, tmp_path: Path) -> None:
    data_dir, config, _ = trained
    dead = tmp_path / "dead.yaml"
    dead.write_text(config.read_text().replace("tracking_uri: null", "tracking_uri: http://127.0.0.1:9"))
    started = time.perf_counter()
    result = cli("train", "--config", str(dead), data_dir=data_dir, timeout=300)
    assert result.returncode == 2
    assert "MLflow registry at http://127.0.0.1:9 is unreachable" in result.stderr
    assert "Traceback" not in result.stderr
    assert "tuning" not in result.stdout  # it failed before any search started
    assert time.perf_counter() - started < 120


@pytest.mark.slow
def test_launcher_serves_the_champions_on_loopback_and_stops_without_orphans(trained) -> None:
    import os
    import signal
    import subprocess
    import sys

    import psutil

    data_dir, _, _ = trained
    launcher = subprocess.Popen(
        [sys.executable, "-m", "serving.launcher", "--free-ports", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ | {"PORTFOLIO_OS_DATA_DIR": str(data_dir)},
    )
    lines: list[str] = []
    try:
        assert launcher.stdout is not None
        for line in launcher.stdout:
            lines.append(line)
            if line.startswith("Serving;") or launcher.poll() is not None:
                break
        out = "".join(lines)
        assert "GET /v1/signals?tickers=AAPL,MSFT,JPM -> 200" in out, out[-3000:]
        assert "GET /v1/explanations/AAPL -> 200" in out and "POST /v1/allocations -> 200" in out
        children = psutil.Process(launcher.pid).children(recursive=True)
        assert len(children) >= 3  # technical, ensemble, gateway (and their workers)
        listening = [c.laddr.ip for p in children for c in p.connections("tcp") if c.status == "LISTEN"]
        # gRPC listeners (make serve gives every model server one) bind 127.0.0.1 through an IPv6 socket
        # on the IPv4-mapped ::ffff:127.0.0.1: the same loopback address, reachable from nowhere else.
        assert listening and {ip.removeprefix("::ffff:") for ip in listening} == {"127.0.0.1"}, listening
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        stop_launcher(launcher, timeout=30)
