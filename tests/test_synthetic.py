"""The synthetic universe generator (scale tests and edge cases only; no quality figures on it)."""

from __future__ import annotations

from typing import TypeVar, cast

import numpy as np
import pandas as pd
import pytest

from feature_repo import tables as t
from training.errors import TrainingError
from training.ingest.synthetic import (
    BENCHMARK_SYMBOL,
    SyntheticDataError,
    SyntheticUniverse,
    document_id,
    generate_universe,
    scored_documents,
    session_dates,
    ticker_codes,
)
from training.ingest.synthetic_defects import (
    MISSING_SPAN_SESSIONS,
    OUTLIER_FACTOR,
    SPLIT_FACTOR,
    STALE_SESSIONS,
    inject_defects,
)

FLOAT = "float64"
STR = "object"
DAY = "datetime64[ns]"
EXPECTED_DTYPES = {
    "prices": dict.fromkeys(t.PRICE_COLUMNS, FLOAT) | {t.TICKER: STR, t.DATE: DAY, t.SOURCE: STR, t.SYNTHETIC: "bool"},
    "benchmark": {"symbol": STR, t.DATE: DAY, "close": FLOAT, t.SOURCE: STR, t.SYNTHETIC: "bool"},
    "fundamentals": dict.fromkeys(t.FUNDAMENTAL_COLUMNS, FLOAT)
    | {t.TICKER: STR, "period_end": DAY, "report_date": DAY, t.SOURCE: STR, t.SYNTHETIC: "bool"},
    "documents": {
        "doc_id": STR,
        t.TICKER: STR,
        "published_at": "datetime64[ns, UTC]",
        t.SOURCE: STR,
        "title": STR,
        "body": STR,
        t.SYNTHETIC: "bool",
    },
}
KEYS = {
    "prices": t.PRICE_KEY,
    "benchmark": t.BENCHMARK_KEY,
    "fundamentals": t.FUNDAMENTAL_KEY,
    "documents": t.DOCUMENT_KEY,
}
CONTRACTS = {
    "prices": t.PRICE_COLUMNS,
    "benchmark": t.BENCHMARK_COLUMNS,
    "fundamentals": t.FUNDAMENTAL_COLUMNS,
    "documents": t.DOCUMENT_COLUMNS,
}


PandasT = TypeVar("PandasT", pd.Series, pd.DataFrame)


def _log(x: PandasT) -> PandasT:
    return cast(PandasT, np.log(x))


@pytest.fixture(scope="module")
def universe() -> SyntheticUniverse:
    return generate_universe(n_tickers=30, n_months=6, seed=11)


@pytest.fixture(scope="module")
def wide_returns() -> tuple[pd.DataFrame, pd.Series]:
    """Daily log returns (sessions x tickers) of a mid-sized universe, and each ticker's sector."""
    u = generate_universe(n_tickers=120, n_months=12, seed=5, n_docs_per_ticker_per_year=0)
    closes = u.prices.pivot(index=t.DATE, columns=t.TICKER, values="adj_close")
    return _log(closes).diff().iloc[1:], u.sectors


def _frames(u: SyntheticUniverse) -> dict[str, pd.DataFrame]:
    return {name: getattr(u, name) for name in CONTRACTS}


def test_frames_match_the_column_contracts_and_dtypes(universe: SyntheticUniverse) -> None:
    for name, frame in _frames(universe).items():
        assert tuple(frame.columns) == CONTRACTS[name], name
        assert {c: str(d) for c, d in frame.dtypes.items()} == EXPECTED_DTYPES[name], name
        assert len(frame) > 0, name
        assert not frame.isna().any().any(), name
    scored = scored_documents(universe.documents, seed=1)
    assert tuple(scored.columns) == t.SCORED_DOCUMENT_COLUMNS
    assert str(scored["published_at"].dtype) == "datetime64[ns, UTC]"


def test_every_row_is_flagged_synthetic(universe: SyntheticUniverse) -> None:
    for name, frame in _frames(universe).items():
        assert frame[t.SYNTHETIC].all(), name
        assert (frame[t.SOURCE] == "synthetic").all(), name
    assert (scored_documents(universe.documents)["model_version"] == "synthetic").all()


def test_no_duplicate_keys(universe: SyntheticUniverse) -> None:
    for name, frame in _frames(universe).items():
        assert not frame.duplicated(list(KEYS[name])).any(), name
    prices = universe.prices
    assert prices.equals(prices.sort_values(list(t.PRICE_KEY), ignore_index=True))


def test_same_seed_same_frames_other_seed_other_frames() -> None:
    a = generate_universe(n_tickers=12, n_months=3, seed=4)
    b = generate_universe(n_tickers=12, n_months=3, seed=4)
    c = generate_universe(n_tickers=12, n_months=3, seed=5)
    for name in CONTRACTS:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
        assert not getattr(a, name).equals(getattr(c, name)), name
    pd.testing.assert_frame_equal(scored_documents(a.documents, 3), scored_documents(b.documents, 3))
    # Streams are independent: the document rate does not move prices.
    d = generate_universe(n_tickers=12, n_months=3, seed=4, n_docs_per_ticker_per_year=2)
    pd.testing.assert_frame_equal(a.prices, d.prices)
    assert len(d.documents) < len(a.documents)


def test_tickers_and_sessions_look_like_the_asx(universe: SyntheticUniverse) -> None:
    codes = ticker_codes(2400)
    assert len(set(codes)) == 2400
    assert all(len(c) == 3 and c.isalpha() and c.isupper() for c in codes)
    assert list(codes) == sorted(codes)
    assert list(ticker_codes(30)) == sorted(universe.prices[t.TICKER].unique())
    dates = session_dates("2022-01-03", 36)
    assert (dates.dayofweek < 5).all()
    assert (dates == dates.normalize()).all()
    assert 740 <= len(dates) <= 770  # ~21 a month
    holidays = [
        "2022-01-26",
        "2022-04-15",
        "2022-04-18",
        "2022-04-25",
        "2022-06-13",
        "2022-12-26",
        "2023-12-25",
    ]
    assert not dates.isin(pd.to_datetime(holidays)).any()
    per_ticker = universe.prices.groupby(t.TICKER)[t.DATE].agg(["count", "min", "max"])
    assert (per_ticker["count"] == per_ticker["count"].iloc[0]).all()  # clean: no gaps
    assert 120 <= per_ticker["count"].iloc[0] <= 130


def test_ohlcv_is_consistent(universe: SyntheticUniverse) -> None:
    p = universe.prices
    assert (p["low"] > 0).all()
    assert (p["low"] <= np.minimum(p["open"], p["close"])).all()
    assert (np.maximum(p["open"], p["close"]) <= p["high"]).all()
    assert (p["adj_close"] == p["close"]).all()
    assert (p["volume"] >= 1).all()
    assert (p["volume"] == np.round(p["volume"])).all()
    assert p.groupby(t.TICKER)["volume"].median().nunique() > 20  # per-ticker volume levels


def test_factor_structure_and_volatility_spread(wide_returns: tuple[pd.DataFrame, pd.Series]) -> None:
    returns, sectors = wide_returns
    corr = returns.corr().to_numpy()
    upper = np.triu_indices_from(corr, k=1)
    assert corr[upper].mean() > 0.03  # a common market factor
    sector = sectors.reindex(returns.columns).to_numpy()
    same = (sector[:, None] == sector[None, :])[upper]
    assert corr[upper][same].mean() > corr[upper][~same].mean()  # sector factors on top
    vol = returns.std() * np.sqrt(252)
    assert vol.max() > 2 * vol.min()
    # Fat tails: excess kurtosis of idiosyncratic-dominated returns is positive on average.
    assert returns.kurt().median() > 0


def test_small_caps_are_more_volatile(universe: SyntheticUniverse) -> None:
    first = universe.prices.groupby(t.TICKER).first()
    funda = universe.fundamentals.groupby(t.TICKER)["shares_outstanding"].first()
    log_cap = _log(first["close"] * funda)
    vol = universe.prices.groupby(t.TICKER)["adj_close"].apply(lambda s: np.log(s).diff().std())
    assert log_cap.corr(vol, method="spearman") < -0.3


def test_benchmark_is_a_cap_weighted_index_of_the_universe(universe: SyntheticUniverse) -> None:
    bench = universe.benchmark
    assert (bench["symbol"] == BENCHMARK_SYMBOL).all()
    assert bench[t.DATE].tolist() == sorted(universe.prices[t.DATE].unique().tolist())
    assert (bench["close"] > 0).all()
    bench_ret = _log(bench.set_index(t.DATE)["close"]).diff()
    closes = universe.prices.pivot(index=t.DATE, columns=t.TICKER, values="adj_close")
    mean_ret = _log(closes).diff().mean(axis=1)
    assert bench_ret.corr(mean_ret) > 0.5


def test_fundamentals_are_quarterly_point_in_time_and_scaled(universe: SyntheticUniverse) -> None:
    f = universe.fundamentals
    lag = (f["report_date"] - f["period_end"]).dt.days
    assert (f["report_date"] > f["period_end"]).all()
    assert lag.between(20, 60).all()
    assert lag.nunique() > 10
    assert f["period_end"].dt.is_quarter_end.all()
    assert set(f["period_end"].dt.month) == {3, 6, 9, 12}
    first_session, last_session = universe.prices[t.DATE].min(), universe.prices[t.DATE].max()
    assert f["period_end"].min() < first_session  # a report is visible from the start of the window
    assert f["period_end"].max() > last_session - pd.Timedelta(days=92)
    assert f.groupby(t.TICKER).size().nunique() == 1
    assert (f["net_income"] < 0).any() and (f["net_income"] > 0).any()
    stock = ["revenue", "total_assets", "total_equity", "total_debt", "shares_outstanding"]
    assert (f[stock] > 0).all().all()
    assert (f["total_assets"] > f["total_equity"]).all()
    closes = universe.prices.groupby(t.TICKER)["close"].median()
    cap = f.groupby(t.TICKER)["shares_outstanding"].median() * closes
    revenue = f.groupby(t.TICKER)["revenue"].median()
    assert _log(cap).corr(_log(revenue)) > 0.5


def test_documents_are_dated_templated_and_content_addressed(universe: SyntheticUniverse) -> None:
    docs = universe.documents
    assert docs["doc_id"].is_unique
    assert all(document_id(a, b) == i for a, b, i in zip(docs["title"], docs["body"], docs["doc_id"], strict=True))
    assert document_id("Trading  HALT", "Body\ttext ") == document_id("trading halt", "body text")
    assert document_id("a", "b") != document_id("a b", "")
    published = docs["published_at"]
    assert str(published.dt.tz) == "UTC"
    first, last = universe.prices[t.DATE].min(), universe.prices[t.DATE].max()
    assert published.min() < first.tz_localize("UTC") + pd.Timedelta(days=30)
    assert published.max() > last.tz_localize("UTC") - pd.Timedelta(days=30)
    local = published.dt.tz_convert("Australia/Sydney")
    assert (local.dt.dayofweek >= 5).any()  # some at weekends
    assert ((local.dt.hour < 10) | (local.dt.hour >= 16)).mean() > 0.2  # some outside trading hours
    assert docs["title"].nunique() > 10
    assert docs.apply(lambda r: r[t.TICKER] in r["body"], axis=1).all()
    assert docs.groupby(t.TICKER).size().size == 30


def test_scored_documents_are_probabilities_leaning_to_the_template_tone(universe: SyntheticUniverse) -> None:
    scored = scored_documents(universe.documents, seed=2)
    probs = scored[["p_negative", "p_neutral", "p_positive"]]
    assert ((probs >= 0) & (probs <= 1)).all().all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(scored["score"], scored["p_positive"] - scored["p_negative"])
    assert scored["doc_id"].tolist() == universe.documents["doc_id"].tolist()
    titles = universe.documents["title"]
    positive = titles.str.contains("upgrades|record| up ", regex=True)
    negative = titles.str.contains("downgrades|impairment| down ", regex=True)
    assert scored.loc[positive, "score"].mean() > 0.3
    assert scored.loc[negative, "score"].mean() < -0.3
    assert not scored_documents(universe.documents, seed=3)["score"].equals(scored["score"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_tickers": 0},
        {"n_tickers": 26**3 + 1},
        {"n_months": 0},
        {"seed": -1},
        {"n_docs_per_ticker_per_year": -1.0},
    ],
)
def test_refuses_impossible_requests(kwargs: dict[str, float]) -> None:
    with pytest.raises(SyntheticDataError) as info:
        generate_universe(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, TrainingError)


@pytest.mark.parametrize("seed", [0, 1])
def test_inject_defects_plants_each_defect_on_the_reported_ticker(seed: int) -> None:
    clean = generate_universe(n_tickers=30, n_months=6, seed=seed, n_docs_per_ticker_per_year=0).prices
    before = clean.copy()
    defective, expected = inject_defects(clean, seed=seed)
    pd.testing.assert_frame_equal(clean, before)  # input untouched
    tickers = expected.tickers()
    assert len(set(tickers.values())) == 6
    sessions = pd.DatetimeIndex(sorted(clean[t.DATE].unique()))

    # Removed keys: exactly the missing span and the stale tail.
    keys = set(zip(clean[t.TICKER], clean[t.DATE], strict=True))
    kept = set(zip(defective[t.TICKER], defective[t.DATE], strict=True))
    removed = {(expected.missing_span.ticker, d) for d in expected.missing_span.dates}
    removed |= {(expected.stale.ticker, d) for d in expected.stale.dates}
    assert keys - kept == removed and kept <= keys
    assert len(expected.missing_span.dates) >= MISSING_SPAN_SESSIONS
    assert expected.stale.dates == tuple(sessions[-STALE_SESSIONS:])
    last_bar = defective.groupby(t.TICKER)[t.DATE].max()
    assert last_bar[expected.stale.ticker] == sessions[-STALE_SESSIONS - 1]
    assert (last_bar.drop(expected.stale.ticker) == sessions[-1]).all()

    # Duplicates: exact copies, only on the reported ticker and dates.
    dup = defective[defective.duplicated(keep=False)]
    assert set(dup[t.TICKER]) == {expected.duplicated.ticker}
    assert sorted(set(dup[t.DATE])) == list(expected.duplicated.dates)
    assert len(dup) == 2 * len(expected.duplicated.dates)
    assert defective.duplicated(list(t.PRICE_KEY)).sum() == len(expected.duplicated.dates)

    # Changed values: non-positive, outlier and split, nothing else.
    merged = defective.drop_duplicates().merge(clean, on=list(t.PRICE_KEY), suffixes=("", "_clean"))
    prices = ["open", "high", "low", "close", "adj_close"]
    ratio = pd.DataFrame({c: merged[c] / merged[f"{c}_clean"] for c in [*prices, "volume"]})
    changed = (ratio != 1.0).any(axis=1)
    assert set(merged.loc[changed, t.TICKER]) == {
        expected.non_positive.ticker,
        expected.outlier.ticker,
        expected.split.ticker,
    }

    zero = merged[(merged[prices] <= 0).any(axis=1)]
    assert zero[t.TICKER].tolist() == [expected.non_positive.ticker]
    assert zero[t.DATE].tolist() == list(expected.non_positive.dates)
    assert (zero[["close", "adj_close"]] == 0).all().all()

    is_outlier = merged[t.TICKER] == expected.outlier.ticker
    spiked = ratio.loc[is_outlier & changed]
    assert merged.loc[spiked.index, t.DATE].tolist() == list(expected.outlier.dates)
    np.testing.assert_allclose(spiked[prices], OUTLIER_FACTOR)
    outlier_ret = defective[defective[t.TICKER] == expected.outlier.ticker].set_index(t.DATE)["adj_close"].pct_change()
    day = expected.outlier.dates[0]
    assert outlier_ret[day] > 0.6  # +80% ...
    assert outlier_ret.shift(-1)[day] < -0.35  # ... and back

    is_split = merged[t.TICKER] == expected.split.ticker
    after = is_split & (merged[t.DATE] >= expected.split.dates[0])
    np.testing.assert_allclose(ratio.loc[after, prices], SPLIT_FACTOR)
    np.testing.assert_allclose(ratio.loc[after, "volume"], 1 / SPLIT_FACTOR)
    assert (ratio.loc[is_split & ~after] == 1.0).all().all()
    split_ret = defective[defective[t.TICKER] == expected.split.ticker].set_index(t.DATE)["adj_close"].pct_change()
    assert split_ret[expected.split.dates[0]] == pytest.approx(SPLIT_FACTOR - 1, abs=0.02)


def test_health_checks_pass_on_clean_data_and_flag_every_planted_defect() -> None:
    from training.health import run_health_checks

    clean = generate_universe(n_tickers=30, n_months=6, seed=2, n_docs_per_ticker_per_year=0).prices
    assert not any(c.affected for c in run_health_checks(clean).checks)
    defective, expected = inject_defects(clean, seed=2)
    report = run_health_checks(defective)
    check_of = {
        "missing_span": "missing_sessions",
        "stale": "stale_tickers",
        "non_positive": "non_positive_prices",
        "outlier": "outlier_returns",
        "split": "unadjusted_splits",
        "duplicated": "duplicate_rows",
    }
    for defect, ticker in expected.tickers().items():
        examples = report.check(check_of[defect]).examples
        assert examples and all(e.startswith(ticker) for e in examples), (defect, examples)


def test_inject_defects_refuses_a_frame_too_small() -> None:
    prices = generate_universe(n_tickers=5, n_months=6, n_docs_per_ticker_per_year=0).prices
    with pytest.raises(SyntheticDataError):
        inject_defects(prices)
    prices = generate_universe(n_tickers=10, n_months=2, n_docs_per_ticker_per_year=0).prices
    with pytest.raises(SyntheticDataError):
        inject_defects(prices)


@pytest.mark.slow
def test_full_default_size() -> None:
    """2,400 tickers x 36 months: about 1.8M price rows (runtime is measured, not asserted)."""
    u = generate_universe()
    assert 1_750_000 <= len(u.prices) <= 1_900_000
    assert u.prices[t.TICKER].nunique() == 2400
    assert not u.prices.duplicated(list(t.PRICE_KEY)).any()
    assert u.prices[t.SYNTHETIC].all()
    assert len(u.fundamentals) == 2400 * u.fundamentals["period_end"].nunique()
    assert u.documents["doc_id"].is_unique
    assert (u.prices["adj_close"] > 0).all()
