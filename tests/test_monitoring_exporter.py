"""The exporter's series from report files, the text format, the loopback /metrics server and retrain."""

from __future__ import annotations

import threading
import time
import urllib.request
from datetime import date

import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

from feature_repo.files import write_feature_file
from feature_repo.schema import FEATURES_BY_VIEW
from monitoring import reports
from monitoring.decay import DecayResult
from monitoring.drift import FeatureDrift, ViewDrift
from monitoring.exporter import EXPORTED_METRICS, MonitoringCollector, serve, write_textfile
from monitoring.retrain import RETRAIN_COMMAND, decide
from tests.servers import free_port


def _drift(share: float) -> ViewDrift:
    """SYNTHETIC summary."""
    features = [
        FeatureDrift("ret_21d", "wasserstein", 0.25, 0.9, True),
        FeatureDrift("vol_63d", "wasserstein", 0.25, 0.1, False),
    ]
    return ViewDrift("technical_features", {"start": "2005-01-01"}, {"start": "2008-01-01"}, 10, 5, share, share >= 0.5,
                     features, run_at=1_700_000_000.0)  # fmt: skip


def _decay(tstat: float) -> DecayResult:
    """SYNTHETIC result."""
    return DecayResult("technical", "2026-01-02", 21, 63, 300, 0.02, 0.03, tstat, 3.5, 2.0, tstat < 2.0, tstat < 2.0)


def _write_inputs(data_dir) -> None:
    reports.write_json(reports.latest_drift_file(data_dir / "reports", "technical_features"), _drift(0.5).to_dict())
    reports.write_json(reports.latest_decay_file(data_dir / "reports"), {"models": [_decay(1.4).to_dict()]})
    rows = pd.DataFrame({"ticker": ["AAA"], "date": [pd.Timestamp("2026-01-01")]})
    for spec in FEATURES_BY_VIEW["technical_features"]:
        rows[spec.name] = 0.0
    write_feature_file(data_dir, "technical_features", rows)


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_collector_reads_the_newest_reports(tmp_path):
    _write_inputs(tmp_path)
    now = pd.Timestamp("2026-01-02", tz="UTC").timestamp()
    families = {f.name: f for f in MonitoringCollector(tmp_path, clock=lambda: now).collect()}
    assert set(families) == EXPORTED_METRICS
    detected = {tuple(s.labels.values()): s.value for s in families["portfolio_os_drift_detected"].samples}
    assert detected == {("technical_features", "ret_21d"): 1.0, ("technical_features", "vol_63d"): 0.0}
    (fresh,) = families["portfolio_os_feature_freshness_seconds"].samples
    assert fresh.labels == {"view": "technical_features"} and fresh.value == 86400.0  # views without rows: absent
    assert families["portfolio_os_model_rolling_ic_tstat"].samples[0].value == 1.4


def test_textfile_and_loopback_server_export_the_same_series(tmp_path):
    _write_inputs(tmp_path)
    text = write_textfile(tmp_path / "out" / "monitoring.prom", tmp_path).read_text()
    assert _samples(text)[("portfolio_os_drift_share", (("view", "technical_features"),))] == 0.5
    port, stop = free_port(), threading.Event()
    thread = threading.Thread(target=serve, args=(tmp_path, "127.0.0.1", port, stop), daemon=True)
    thread.start()
    try:
        served = ""
        deadline = time.monotonic() + 60  # only stops a hung test: the thread may start late on a busy machine
        while not served and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    served = response.read().decode()
            except OSError:
                time.sleep(0.1)
        assert _samples(served)[("portfolio_os_model_rolling_rank_ic", (("model", "technical"),))] == 0.03
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_retrain_decision_gives_reasons_only_past_thresholds():
    quiet = decide([_drift(0.25)], [_decay(3.0)])
    assert not quiet.recommended and quiet.reasons == []
    due = decide([_drift(0.5)], [_decay(1.4)])
    assert due.recommended and len(due.reasons) == 2
    assert "ret_21d" in due.reasons[0] and "lost significance" in due.reasons[1]
    assert RETRAIN_COMMAND == ("-m", "training", "run", "--stages", "train")
    assert date.fromisoformat(_decay(1.0).as_of)
