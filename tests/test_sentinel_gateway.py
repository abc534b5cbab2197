"""``/v1/signals`` carries the sentinel's ``data_quality`` flag, read online from the data_quality view.

The gateway runs on a copy of the shared SYNTHETIC feature repo (whose fixture ran the sentinel) with
data_quality rows rewritten for chosen tickers and materialised the way the sentinel does it
(:func:`monitoring.sentinel.job.materialize_view`).
"""

# ruff: noqa: F811  # fixtures imported from tests/gateway_fixtures are parameters by design
from __future__ import annotations

import shutil
import typing
from pathlib import Path
from typing import Any

import pandas as pd

from api.data_quality import DataQualityFlags, flag_signals
from api.errors import FeatureStoreUnavailableError
from api.schemas import DataQualityStatus
from feature_repo.data_quality import DATA_QUALITY_FEATURES, DATA_QUALITY_STATUSES, DATA_QUALITY_VIEW
from feature_repo.files import write_feature_file
from feature_repo.tables import DATE, TICKER
from monitoring.sentinel.job import materialize_view
from tests.gateway_fixtures.fixtures import (  # noqa: F401
    auth,
    gateway,
    new_key,
    settings_for,
    shared_env,
)


def _rows(sessions: dict[str, str], flagged: dict[str, int]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            TICKER: list(sessions),
            DATE: pd.to_datetime(list(sessions.values())),
            **{s.name: 0.0 for s in DATA_QUALITY_FEATURES},
        }
    )
    frame["anomaly"] = [flagged[t] for t in sessions]
    frame["anomaly"] = frame["anomaly"].astype("int64")
    return frame[[TICKER, DATE, *(s.name for s in DATA_QUALITY_FEATURES)]]


def _signals(client: Any, key: str, tickers: list[str]) -> dict[str, dict[str, Any]]:
    answer = client.get("/v1/signals", params={"tickers": ",".join(tickers)}, headers=auth(key))
    assert answer.status_code == 200, answer.text
    return {s["ticker"]: s for s in answer.json()["signals"]}


def test_signals_flag_tickers_the_sentinel_flagged_on_the_snapshot_session(shared_env, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(shared_env.data_dir, data_dir)
    env = type(shared_env)(data_dir=data_dir, tickers=shared_env.tickers, servers=shared_env.servers)
    tickers = env.tickers[:4]
    with gateway(settings_for(env, tmp_path)) as client:
        before = _signals(client, new_key(client), tickers)
    # The fixture's own sentinel run scored the last sessions: every ticker is checked.
    assert {s["data_quality"] for s in before.values()} <= {"ok", "anomaly"}
    session = {t: before[t]["as_of"][:10] for t in tickers}
    # A new sentinel run: tickers[0] flagged on its session, [1] scored and clean, [2] flagged on an
    # older session only (its newest row is not the snapshot's session), [3] not in the run.
    older = (pd.Timestamp(session[tickers[2]]) - pd.Timedelta(days=7)).date().isoformat()
    sessions = {tickers[0]: session[tickers[0]], tickers[1]: session[tickers[1]], tickers[2]: older}
    write_feature_file(data_dir, DATA_QUALITY_VIEW, _rows(sessions, {tickers[0]: 1, tickers[1]: 0, tickers[2]: 1}))
    materialize_view(data_dir)
    with gateway(settings_for(env, tmp_path / "second")) as client:
        after = _signals(client, new_key(client), tickers)
    assert [after[t]["data_quality"] for t in tickers[:3]] == ["anomaly", "ok", "unchecked"]
    assert after[tickers[3]]["data_quality"] == before[tickers[3]]["data_quality"]  # its online row is unchanged
    # Nothing else of the answer changed.
    assert {t: {k: v for k, v in s.items() if k != "data_quality"} for t, s in after.items()} == {
        t: {k: v for k, v in s.items() if k != "data_quality"} for t, s in before.items()
    }


class _Store:
    """A stand-in for the online-store window: counts reads, fails when told."""

    def __init__(self, fail: bool) -> None:
        self.fail, self.calls = fail, 0

    def read_refs(self, refs: list[str], rows: list[dict[str, str]]) -> dict[str, list[Any]]:
        self.calls += 1
        if self.fail:
            raise FeatureStoreUnavailableError("view not registered")
        return {"anomaly": [1] * len(rows), "anomaly__ts": [1_714_608_000] * len(rows)}  # 2024-05-02 UTC


def test_an_unreadable_view_answers_unchecked_and_is_not_asked_again_within_the_cache() -> None:
    now = [0.0]
    store = _Store(fail=True)
    flags = DataQualityFlags(store, cache_seconds=60.0, clock=lambda: now[0])  # type: ignore[arg-type]
    assert {f.anomaly for f in flags.read(["AAA", "BBB"]).values()} == {None}
    assert flags.cached(["AAA"]) is not None and store.calls == 1
    now[0] = 61.0
    assert flags.cached(["AAA"]) is None
    store.fail = False
    read = flags.read(["AAA"])
    assert store.calls == 2 and read["AAA"].session == "2024-05-02" and read["AAA"].anomaly == 1.0


def test_flagging_copies_the_signals_and_compares_sessions() -> None:
    store = _Store(fail=False)
    flags = DataQualityFlags(store, cache_seconds=0.0).read(["AAA", "BBB"])  # type: ignore[arg-type]
    signal = {"ticker": "AAA", "as_of": "2024-05-02T00:00:00Z"}
    answer = {"signals": [signal, {"ticker": "BBB", "as_of": "2024-05-03T00:00:00Z"}, {"ticker": "CCC", "as_of": None}]}
    flagged = flag_signals(answer, flags)
    assert [s["data_quality"] for s in flagged["signals"]] == ["anomaly", "unchecked", "unchecked"]
    assert "data_quality" not in signal  # the cached composition's dicts are never changed


def test_the_schema_literal_is_the_ground_floor_list() -> None:
    assert typing.get_args(DataQualityStatus) == DATA_QUALITY_STATUSES
