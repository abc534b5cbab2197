"""``python -m monitoring sentinel`` end to end on SYNTHETIC features: files, the online view, the exported metric."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from prometheus_client import generate_latest

from feature_repo.data_quality import DATA_QUALITY_VIEW, TICKER_CLASSES
from feature_repo.files import read_feature_file, write_feature_file
from feature_repo.settings import FeatureStoreSettings
from feature_repo.store import FeatureRepo
from feature_repo.transforms.technical import technical_features
from monitoring.__main__ import main
from monitoring.exporter import build_registry
from monitoring.sentinel.job import anomalies_file, latest_sentinel_file


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.ingest.synthetic import generate_universe

    folder = tmp_path_factory.mktemp("sentinel") / "data"
    universe = generate_universe(n_tickers=8, n_months=14, seed=4)
    features = technical_features(universe.prices, universe.benchmark.set_index("date")["close"])
    # A planted fault on the newest session: one ticker's daily return a hundred times its usual size.
    newest = features["date"].max()
    row = (features["ticker"] == features["ticker"].iloc[0]) & (features["date"] == newest)
    features.loc[row, "ret_1d"] = 100 * features["ret_1d"].abs().median() + 0.5
    write_feature_file(folder, "technical_features", features)
    return folder


def test_the_command_writes_the_anomalies_the_view_and_the_metric(data_dir: Path) -> None:
    sessions = sorted(read_feature_file(data_dir, "technical_features")["event_timestamp"].dt.date.unique())
    reference = f"{sessions[0]}:{sessions[199]}"
    assert main(["--data-dir", str(data_dir), "sentinel", "--reference", reference]) == 1  # flagged on the newest
    flagged = pd.read_parquet(anomalies_file(data_dir / "reports"))
    newest = flagged[flagged["date"] == pd.Timestamp(sessions[-1])]
    assert newest["reasons"].str.startswith("return_z").any()
    view = read_feature_file(data_dir, DATA_QUALITY_VIEW)
    assert view["event_timestamp"].dt.date.min() == sessions[200]  # only sessions after the reference
    summary = json.loads(latest_sentinel_file(data_dir / "reports").read_text())
    assert set(summary["anomalies_by_class"]) == set(TICKER_CLASSES)
    # Online: the newest row per ticker, flagged for the planted one.
    repo = FeatureRepo.open(FeatureStoreSettings(data_dir=str(data_dir)))  # type: ignore[call-arg]
    tickers = sorted(view["ticker"].unique())
    online = repo.store.get_online_features(
        features=[f"{DATA_QUALITY_VIEW}:anomaly"], entity_rows=[{"ticker": t} for t in tickers]
    ).to_dict()
    flagged_online = {t for t, a in zip(online["ticker"], online["anomaly"], strict=True) if a == 1}
    assert set(newest["ticker"]) == flagged_online
    text = generate_latest(build_registry(data_dir)).decode()
    total = sum(summary["anomalies_by_class"].values())
    assert total >= 1
    lines = [line for line in text.splitlines() if line.startswith("portfolio_os_data_anomalies{")]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in lines) == total
    assert "portfolio_os_data_sentinel_last_run_timestamp_seconds" in text


def test_a_bad_contamination_is_refused_with_exit_2(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["--data-dir", str(data_dir), "sentinel", "--reference", "2020-01-01:2020-12-31", "--contamination", "0.9"]
    )
    assert code == 2 and "--contamination" in capsys.readouterr().err


def test_the_chart_runs_the_sentinel_and_the_briefing_facts_after_materialisation_when_enabled() -> None:
    """Off by default; enabled, each CronJob runs a command the monitoring CLI accepts."""
    from monitoring.__main__ import build_parser
    from tests.chart_tools import pod_specs, rendered_objects

    def commands(objs: list[dict[str, object]]) -> list[list[str]]:
        return [
            c["command"]
            for o in objs
            if o["kind"] == "CronJob"
            for _, spec in pod_specs(o)  # type: ignore[arg-type]
            for c in spec["containers"]
            if c.get("command", [])[2:4] in (["monitoring", "sentinel"], ["monitoring", "briefing-facts"])
        ]

    assert commands(rendered_objects(None)) == []
    enabled = commands(rendered_objects(None, "--set", "sentinel.enabled=true", "--set", "briefingFacts.enabled=true"))
    assert [c[3] for c in enabled] == ["sentinel", "briefing-facts"]
    for command in enabled:
        build_parser().parse_args(command[3:])  # exits (fails the test) on an argument the CLI refuses
