"""The briefing's stored facts trace to their sources, are point-in-time, and every number of every sentence
is a stored fact. Sources are SYNTHETIC (seeded random scores, sentiment, anomalies, drift runs)."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from api import briefing_text
from api.market_schemas import RegimeInputsPublic, RegimeStatePublic
from feature_repo.briefing import BriefingFacts, BriefingIndex, facts_file, index_file
from feature_repo.data_quality import DATA_QUALITY_FEATURES, DATA_QUALITY_VIEW, STATISTIC_NAMES
from feature_repo.files import write_feature_file
from feature_repo.tables import DATE, TICKER
from monitoring.briefing.facts import SPIKE_LOOKBACK, SPIKE_MIN_HISTORY, SPIKE_Z, TOP
from monitoring.briefing.job import Sources, build_facts, load_sources, run
from monitoring.decay import model_decay
from monitoring.sentinel.job import anomalies_file

SESSIONS = pd.bdate_range("2024-01-01", periods=160)
TICKERS = [f"SYN{i:02d}" for i in range(12)]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _write_sources(data_dir: Path) -> None:
    """Predictions, outcomes, sentiment, sentinel rows and two drift runs, all SYNTHETIC."""
    rng = np.random.default_rng(7)
    grid = pd.MultiIndex.from_product([SESSIONS, TICKERS], names=[DATE, TICKER]).to_frame(index=False)
    predictions = pd.concat(
        [grid.assign(model=m, score=rng.uniform(0, 1, len(grid))) for m in ("ensemble", "technical")],
        ignore_index=True,
    )
    (data_dir / "signals").mkdir(parents=True)
    predictions.to_parquet(data_dir / "signals" / "predictions.parquet")
    known = {d: SESSIONS[min(i + 21, len(SESSIONS) - 1)] for i, d in enumerate(SESSIONS)}
    outcomes = grid.assign(known_at=grid[DATE].map(known), fwd_excess_21d=rng.normal(0, 0.05, len(grid)))
    outcomes.loc[grid[DATE] >= SESSIONS[-21], "known_at"] = SESSIONS[-1] + pd.Timedelta(days=40)
    outcomes.to_parquet(data_dir / "signals" / "outcomes.parquet")
    sentiment = grid.assign(
        sent_score_1d=np.where(rng.uniform(size=len(grid)) < 0.7, rng.normal(0, 0.2, len(grid)), np.nan)
    )
    spike = (sentiment[TICKER] == "SYN03") & (sentiment[DATE] == SESSIONS[-2])
    sentiment.loc[spike, "sent_score_1d"] = 0.95
    columns = dict.fromkeys(("sent_count_1d", "sent_count_21d"), 0) | dict.fromkeys(
        ("sent_mean_21d", "sent_decay_5d", "sent_surprise"), np.nan
    )
    frame = sentiment.assign(**columns)[
        [
            TICKER,
            DATE,
            "sent_score_1d",
            "sent_count_1d",
            "sent_count_21d",
            "sent_mean_21d",
            "sent_decay_5d",
            "sent_surprise",
        ]
    ]
    write_feature_file(data_dir, "sentiment_features", frame)
    scored = grid[grid[DATE] >= SESSIONS[100]]
    view = scored.assign(**{s.name: 0.0 for s in DATA_QUALITY_FEATURES})[
        [TICKER, DATE, *(s.name for s in DATA_QUALITY_FEATURES)]
    ]
    view["anomaly"] = 0
    write_feature_file(data_dir, DATA_QUALITY_VIEW, view)
    flagged = scored.sample(15, random_state=3).assign(ticker_class="mid", anomaly_score=rng.uniform(0.6, 0.8, 15))
    for s in STATISTIC_NAMES:
        flagged[f"dev_{s}"] = rng.normal(0, 4, 15)
        flagged[s] = 0.0
    anomalies_file(data_dir / "reports").parent.mkdir(parents=True)
    flagged.assign(rule="isolation_forest", reasons="").to_parquet(anomalies_file(data_dir / "reports"))
    for stamp, end, share in (("20240301T000000Z", SESSIONS[90], 0.6), ("20240501T000000Z", SESSIONS[150], 0.2)):
        folder = data_dir / "reports" / "drift" / stamp
        folder.mkdir(parents=True)
        features = [
            {"feature": f"f{i}", "detected": i < share * 10, "score": 0.1, "method": "w", "threshold": 0.1}
            for i in range(10)
        ]
        summary = {
            "view": "technical_features",
            "reference": {"start": "2023-01-01", "end": "2023-12-31"},
            "current": {"start": SESSIONS[60].date().isoformat(), "end": end.date().isoformat()},
            "share": share,
            "detected": share >= 0.5,
            "features": features,
            "run_at": 1.0,
        }
        (folder / "technical_features.summary.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Sources]:
    data_dir = tmp_path_factory.mktemp("briefing") / "data"
    data_dir.mkdir()
    _write_sources(data_dir)
    return data_dir, load_sources(data_dir)


def _facts(sources: Sources, session: pd.Timestamp) -> BriefingFacts:
    return build_facts(sources, session, window=20, tstat_min=2.0, generated_at=NOW)


def test_signal_changes_are_the_largest_differences_of_the_stored_scores(sources: tuple[Path, Sources]) -> None:
    data_dir, src = sources
    session, previous = SESSIONS[120], SESSIONS[119]
    facts = _facts(src, session).signals
    assert facts is not None and facts.previous_session == previous.date() and facts.tickers == len(TICKERS)
    raw = pd.read_parquet(data_dir / "signals" / "predictions.parquet")
    ensemble = raw[raw["model"] == "ensemble"].set_index([DATE, TICKER])["score"]
    delta = {t: ensemble[(session, t)] - ensemble[(previous, t)] for t in TICKERS}
    expected = sorted(delta, key=lambda t: -abs(delta[t]))[:TOP]
    assert [c.ticker for c in facts.largest_changes] == expected
    for c in facts.largest_changes:
        assert c.score == ensemble[(session, c.ticker)] and c.previous_score == ensemble[(previous, c.ticker)]
        assert c.change == pytest.approx(delta[c.ticker])


def test_sentiment_spikes_against_each_tickers_own_history(sources: tuple[Path, Sources]) -> None:
    _, src = sources
    session = SESSIONS[-2]
    facts = _facts(src, session).sentiment
    assert facts is not None and facts.spikes and facts.spikes[0].ticker == "SYN03"
    rows = src.sentiment[(src.sentiment[TICKER] == "SYN03") & src.sentiment["sent_score_1d"].notna()]
    history = rows.loc[rows[DATE] < session, "sent_score_1d"].to_numpy()[-SPIKE_LOOKBACK:]
    spike = facts.spikes[0]
    assert spike.history_days == len(history) >= SPIKE_MIN_HISTORY
    assert spike.mean == pytest.approx(history.mean()) and spike.std == pytest.approx(history.std(ddof=1))
    assert spike.z == pytest.approx((0.95 - history.mean()) / history.std(ddof=1)) and abs(spike.z) >= SPIKE_Z


def test_anomalies_drift_and_decay_come_from_their_stores(sources: tuple[Path, Sources]) -> None:
    data_dir, src = sources
    flagged = pd.read_parquet(anomalies_file(data_dir / "reports"))
    session = pd.Timestamp(flagged[DATE].value_counts().index[0])
    facts = _facts(src, session)
    assert facts.anomalies is not None and facts.anomalies.tickers_scored == len(TICKERS)
    assert facts.anomalies.count == int((flagged[DATE] == session).sum())
    top = flagged[flagged[DATE] == session].sort_values("anomaly_score", ascending=False)
    assert [a.ticker for a in facts.anomalies.top] == top[TICKER].tolist()
    assert _facts(src, SESSIONS[50]).anomalies is None  # before the sentinel's first scored session
    # The newest drift run whose window had ended by the session.
    assert [d.share for d in _facts(src, SESSIONS[120]).drift] == [0.6]
    assert [d.share for d in _facts(src, SESSIONS[155]).drift] == [0.2]
    assert _facts(src, SESSIONS[80]).drift == []
    decay = {d.model: d for d in facts.decay}
    for model in ("ensemble", "technical"):
        expected = model_decay(src.predictions, src.outcomes, model, as_of=session.date(), window=20, horizon=21)
        assert decay[model].rolling_rank_ic == expected.rolling_rank_ic
        assert decay[model].rank_ic_tstat == expected.rank_ic_tstat


def test_facts_of_a_session_never_depend_on_later_data(sources: tuple[Path, Sources]) -> None:
    _, src = sources
    session = SESSIONS[130]
    later = session + pd.Timedelta(days=1)
    cut = Sources(
        predictions=src.predictions[src.predictions[DATE] <= session],
        outcomes=src.outcomes[src.outcomes["known_at"] <= session],
        sentiment=src.sentiment[src.sentiment[DATE] <= session],
        anomalies=src.anomalies[src.anomalies[DATE] <= session],
        scored_per_session={d: n for d, n in src.scored_per_session.items() if d <= session.date()},
        drift_summaries=[s for s in src.drift_summaries if date.fromisoformat(s["current"]["end"]) < later.date()],
    )
    assert _facts(cut, session) == _facts(src, session)


def test_the_job_writes_one_file_per_session_and_the_index(sources: tuple[Path, Sources]) -> None:
    data_dir, _ = sources
    facts = run(data_dir, last=3, window=20, clock=lambda: NOW)
    assert [f.session for f in facts] == [d.date() for d in SESSIONS[-3:]]
    index = BriefingIndex.model_validate_json(index_file(data_dir).read_text())
    assert index.first == SESSIONS[-3].date() and index.last == SESSIONS[-1].date()
    assert BriefingFacts.model_validate_json(facts_file(data_dir, index.last).read_text()) == facts[-1]


# --- every number in every sentence is a stored fact --------------------------------------------------------

NUMBER = re.compile(r"\d{4}-\d{2}-\d{2}|[+-]?\d+(?:\.\d+)?%?")


def _allowed(value: Any, out: set[str]) -> None:
    """Every way the templates may write a stored value (formats of briefing_text.FORMATS, ints, dates)."""
    if isinstance(value, dict):
        for v in value.values():
            _allowed(v, out)
    elif isinstance(value, list):
        for v in value:
            _allowed(v, out)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        out.add(str(value))
    elif isinstance(value, float):
        out.update(fmt.format(value) for fmt in briefing_text.FORMATS.values())
    elif isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        out.add(value)


def _numbers_trace(facts: BriefingFacts, state: RegimeStatePublic | None) -> None:
    parts = briefing_text.sections(facts, "SYNTH-INDEX" if state else None, state, "no regime row")
    allowed: set[str] = set()
    _allowed(facts.model_dump(mode="json"), allowed)
    if state is not None:
        _allowed(state.model_dump(mode="json"), allowed)
    for part in parts:
        for sentence in part.sentences:
            for token in NUMBER.findall(sentence):
                # "SYN03" carries digits of a name, not a number: tickers are facts too.
                if any(token in t for t in re.findall(r"[A-Z]+\d+", sentence)):
                    continue
                assert token in allowed, (part.name, sentence, token)


def test_every_number_in_every_sentence_is_a_stored_fact(sources: tuple[Path, Sources]) -> None:
    _, src = sources
    state = RegimeStatePublic(
        date=SESSIONS[130].date(),
        regime="bull",
        trend="up",
        volatility="low",
        inputs=RegimeInputsPublic(
            trend=0.0734, trend_window=63, volatility=0.1523, volatility_median=0.18, vol_window=21
        ),
    )
    checked = 0
    for session in (SESSIONS[0], SESSIONS[101], SESSIONS[130], SESSIONS[-2]):
        facts = _facts(src, session)
        _numbers_trace(facts, state)
        _numbers_trace(facts, None)
        checked += sum(len(p.sentences) for p in briefing_text.sections(facts, None, None, "x"))
    assert checked > 20


def test_the_trace_catches_a_number_that_is_not_a_fact(sources: tuple[Path, Sources], monkeypatch) -> None:
    _, src = sources
    template = briefing_text.TEMPLATES["signals.head"]
    monkeypatch.setitem(briefing_text.TEMPLATES, "signals.head", template + " About 7 more moved.")
    with pytest.raises(AssertionError, match="signals"):
        _numbers_trace(_facts(src, SESSIONS[130]), None)


def test_markdown_holds_every_sentence_under_its_title(sources: tuple[Path, Sources]) -> None:
    _, src = sources
    facts = _facts(src, SESSIONS[130])
    parts = briefing_text.sections(facts, None, None, "the regime view has no row")
    text = briefing_text.markdown(date(2024, 7, 13), facts.session, parts)
    assert text.startswith(f"# Portfolio OS briefing, {facts.session}")
    assert "2024-07-13 is not a session" in text
    for part in parts:
        assert f"## {part.title}" in text and all(f"- {s}" in text for s in part.sentences)


def test_a_day_is_answered_by_its_session_or_refused_naming_the_nearest(tmp_path: Path) -> None:
    from api.briefing import BriefingStore, BriefingUnavailableError
    from api.errors import InvalidRequestError

    store = BriefingStore(str(tmp_path))
    with pytest.raises(BriefingUnavailableError, match="briefing-facts"):
        store.session_for(None)
    sessions = [date(2019, 10, 18), date(2022, 12, 23), date(2022, 12, 27)]  # a Friday; a Friday and a Tuesday
    index_file(tmp_path).parent.mkdir(parents=True)
    index_file(tmp_path).write_text(
        BriefingIndex(first=sessions[0], last=sessions[-1], sessions=sessions).model_dump_json()
    )
    assert store.session_for(None)[1] == date(2022, 12, 27)
    assert store.session_for(date(2022, 12, 26))[1] == date(2022, 12, 23)  # a holiday Monday after a weekend
    assert store.session_for(date(2019, 10, 19))[1] == date(2019, 10, 18)
    with pytest.raises(InvalidRequestError, match="nearest sessions with one are 2019-10-18 and 2022-12-23"):
        store.session_for(date(2021, 6, 1))  # a session whose facts were never written
    with pytest.raises(InvalidRequestError, match="before the first briefing session, 2019-10-18"):
        store.session_for(date(2019, 10, 17))
    with pytest.raises(InvalidRequestError, match="after the last briefing session, 2022-12-27"):
        store.session_for(date(2022, 12, 28))
