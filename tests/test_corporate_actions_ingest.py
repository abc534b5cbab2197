"""Corporate actions through the ingest stage: mask by default, idempotent re-runs, confirmation, fail.

The price files are synthetic, generated in the test (see tests/test_corporate_actions.py).
"""

from __future__ import annotations

import io
import re
import zipfile
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from feature_repo.settings import FeatureStoreSettings
from tests.corporate_action_fixtures import DAYS, JUMP, bars, consolidated, drifting, write_text
from training.__main__ import main
from training.config import EodFilesSource, FilesSource, PipelineConfig, SkfolioSource
from training.context import RunContext
from training.corporate_actions.config import CorporateActionsConfig
from training.corporate_actions.policy import BREAK_REASON, REPORT_NAME
from training.pipeline import run_pipeline
from training.store import OfflineStore


def price_file(path: Path) -> Path:
    """A raw price CSV (no adj_close column): AAA with a planted 1:10 consolidation, BBB clean."""
    closes, volume = consolidated()
    frame = pd.concat([bars("AAA", closes, volume), bars("BBB", drifting(20.0, seed=1))], ignore_index=True)
    frame[["ticker", "date", "open", "high", "low", "close", "volume"]].to_csv(path, index=False)
    return path


def ingest(config: PipelineConfig, data: Path, stages: tuple[str, ...] = ("ingest",)) -> str:
    out = io.StringIO()
    settings = FeatureStoreSettings(environment="local", data_dir=str(data))
    run_pipeline(RunContext(config=config, settings=settings, out=out, progress=False), list(stages))
    return out.getvalue()


def test_ingest_masks_by_default_reruns_idempotently_and_a_confirmation_changes_only_its_ticker(tmp_path: Path) -> None:
    data = tmp_path / "data"
    source = FilesSource(prices=[price_file(tmp_path / "synthetic_prices.csv")])
    # With mask, the health stage passes (the jump is no return) and still lists the suspect.
    first = ingest(PipelineConfig(data=source), data, ("ingest", "health"))
    assert re.search(r"unadjusted_splits +0/", first) and re.search(r"outlier_returns +0/", first)
    assert "corporate-action suspects masked: 1" in first and "AAA 2010-02-01: consolidation ratio 0.1" in first
    assert "0 confirmed action(s) applied, 1 suspected (policy mask: 1 series break(s))" in first
    report = pd.read_csv(data / "reports" / REPORT_NAME)
    assert report[["ticker", "kind", "match"]].to_numpy().tolist() == [["AAA", "consolidation", "1:10"]]
    with OfflineStore(data / "offline.duckdb", read_only=True) as store:
        breaks = store.read("series_breaks", "reason = ?", [BREAK_REASON])
        prices = store.read("prices")
    assert breaks[["ticker", "date"]].to_numpy().tolist() == [["AAA", DAYS[JUMP]]]
    assert len(prices) == 80 and prices["adj_close"].equals(prices["close"])  # every row stays stored, raw

    second = ingest(PipelineConfig(data=source), data)
    assert re.search(r"prices +80 rows: 0 new, 0 changed, 80 unchanged", second)
    assert re.search(r"suspect breaks +1 rows: 0 new, 0 changed, 1 unchanged", second)

    # The user confirms the suspect by copying its row into their actions file.
    actions = write_text(tmp_path / "actions.csv", "".join(report.iloc[:, :5].to_csv(index=False)))
    confirmed = PipelineConfig(data=source, corporate_actions=CorporateActionsConfig(file=actions))
    third = ingest(confirmed, data)
    assert re.search(rf"prices +80 rows: 0 new, {JUMP} changed, {80 - JUMP} unchanged", third)
    assert re.search(r"adjustment_factors +1 rows: 1 new, 0 changed", third)
    assert re.search(r"suspect breaks +0 rows: 0 new, 0 changed, 0 unchanged, 1 removed", third)
    with OfflineStore(data / "offline.duckdb", read_only=True) as store:
        assert store.read("series_breaks", "reason = ?", [BREAK_REASON]).empty
        stored = store.read("prices").set_index(["ticker", "date"])
    aaa, bbb = stored.loc["AAA"], stored.loc["BBB"]
    assert aaa["adj_close"].iloc[:JUMP].to_numpy() == pytest.approx(aaa["close"].iloc[:JUMP].to_numpy() * 10)
    assert (aaa["adj_close"].iloc[JUMP:] == aaa["close"].iloc[JUMP:]).all()
    assert bbb["adj_close"].equals(bbb["close"])
    assert re.search(r"prices +80 rows: 0 new, 0 changed", ingest(confirmed, data))


def test_ingest_policy_fail_exits_3_and_writes_nothing_but_the_report(tmp_path: Path) -> None:
    prices = price_file(tmp_path / "synthetic_prices.csv")
    config = write_text(
        tmp_path / "run.yaml",
        f"name: t\ndata: {{kind: files, prices: [{prices}]}}\ncorporate_actions: {{policy: fail}}\n",
    )
    data = tmp_path / "data"
    assert main(["ingest", "--config", str(config), "--data-dir", str(data), "--no-progress"]) == 3
    assert len(pd.read_csv(data / "reports" / REPORT_NAME)) == 1
    with OfflineStore(data / "offline.duckdb", read_only=True) as store:
        assert store.count("prices") == 0


def test_an_actions_file_is_refused_for_a_source_adjusted_already(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="skfolio source's prices are adjusted already"):
        PipelineConfig(data=SkfolioSource(start=date(2020, 1, 1)), corporate_actions={"file": tmp_path / "a.csv"})


def per_day_archive(path: Path) -> Path:
    """A synthetic yearly zip of headerless per-day files (CODE,YYYYMMDD,open,high,low,close,volume).

    AAA has a planted 1:10 consolidation at JUMP (prices written like ``.05`` as vendors do), BBB is
    clean, XJO is an index row (routed to the benchmark, never checked for corporate actions).
    """
    aaa, aaa_volume = consolidated()
    bbb = drifting(20.0, seed=1)
    with zipfile.ZipFile(path, "w") as archive:
        for i, day in enumerate(DAYS):
            lines = [
                f"AAA,{day:%Y%m%d},{aaa[i]:g},{aaa[i] * 1.01:.4f},{aaa[i] * 0.99:.4f},{aaa[i]:g},{aaa_volume[i]:.0f}",
                f"BBB,{day:%Y%m%d},{bbb[i]:g},{bbb[i] * 1.01:.4f},{bbb[i] * 0.99:.4f},{bbb[i]:g},50000",
                f"XJO,{day:%Y%m%d},4000,4010,3990,{4000 + i},0",
            ]
            text = "\n".join(line.replace(",0.", ",.") for line in lines) + "\n"
            archive.writestr(f"{day:%Y}/{day:%Y%m%d}.txt", text)
    return path


def test_per_day_vendor_files_with_a_planted_consolidation_are_masked_then_adjusted(tmp_path: Path) -> None:
    source = EodFilesSource(paths=[per_day_archive(tmp_path / "synthetic-eod-2010.zip")])
    data = tmp_path / "data"
    out = ingest(PipelineConfig(data=source), data, ("ingest", "health"))
    assert "1 suspected (policy mask: 1 series break(s))" in out and "unadjusted_splits        0/" in out
    with OfflineStore(data / "offline.duckdb", read_only=True) as store:
        assert store.read("series_breaks", "reason = ?", [BREAK_REASON])["ticker"].tolist() == ["AAA"]
        assert store.count("benchmark") == len(DAYS)
    adjust = PipelineConfig(data=source, corporate_actions=CorporateActionsConfig(policy="adjust"))
    out = ingest(adjust, data)
    assert re.search(rf"prices +80 rows: 0 new, {JUMP} changed", out)
    with OfflineStore(data / "offline.duckdb", read_only=True) as store:
        assert store.read("series_breaks", "reason = ?", [BREAK_REASON]).empty
        aaa = store.read("prices", "ticker = ?", ["AAA"])
        factors = store.read("adjustment_factors")
    assert factors[["ticker", "kind", "ratio", "origin"]].to_numpy().tolist() == [
        ["AAA", "consolidation", 0.1, "suspect"]
    ]
    adj, close = aaa["adj_close"].to_numpy(), aaa["close"].to_numpy()
    jump = adj[JUMP] / adj[JUMP - 1]
    assert jump == pytest.approx(1.04, rel=0.02)  # only the day's own move is left
    assert close[0] == pytest.approx(adj[0] / 10)  # the raw close is kept
