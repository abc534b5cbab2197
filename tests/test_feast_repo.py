"""The Feast repo for real: apply, point-in-time joins, materialisation and train/serve parity.

Feature values come from the real transforms over the bundled real prices; fundamentals and
scored documents are small hand-made fixtures (test inputs only, no figure is reported on them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_repo.data_quality import DATA_QUALITY_FEATURES, DATA_QUALITY_VIEW
from feature_repo.definitions import ALLOCATOR_FEATURES, ALLOCATOR_SERVICE, MODEL_SERVICES
from feature_repo.files import read_feature_file, write_feature_file
from feature_repo.market import MARKET_VIEWS
from feature_repo.schema import FEATURES_BY_VIEW, names
from feature_repo.settings import FeatureStoreSettings
from feature_repo.store import FeatureRepo, FeatureStoreConfigError, full_window, redis_url_to_feast
from feature_repo.transforms.alpha import alpha_features
from feature_repo.transforms.fundamental import fundamental_features
from feature_repo.transforms.sentiment import sentiment_features
from feature_repo.transforms.technical import technical_features
from tests.conftest import benchmark_series

TICKERS = ["AAPL", "JPM", "MSFT", "XOM", "KO"]
SERVICES = [*MODEL_SERVICES, ALLOCATOR_SERVICE]


def fundamentals_fixture() -> pd.DataFrame:
    rows = []
    for i, ticker in enumerate(TICKERS):
        ends = pd.date_range("2019-03-31", "2022-09-30", freq="QE")
        rows.append(
            pd.DataFrame(
                {
                    "ticker": ticker,
                    "period_end": ends,
                    "report_date": ends + pd.Timedelta(days=35 + i),
                    "revenue": 1e9 * (i + 1),
                    "net_income": 1e8 * (i + 1),
                    "operating_cash_flow": 1.5e8,
                    "total_assets": 5e9,
                    "total_equity": 2e9 * (i + 1),
                    "total_debt": 1e9,
                    "shares_outstanding": 1e7,
                    "source": "test",
                    "synthetic": True,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def documents_fixture(dates: pd.DatetimeIndex) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    n = 600
    stamps = dates[rng.integers(0, len(dates), n)] + pd.to_timedelta(rng.integers(0, 86_400, n), "s")
    return pd.DataFrame(
        {
            "ticker": rng.choice(TICKERS, n),
            "published_at": stamps.tz_localize("UTC"),
            "score": rng.uniform(-1, 1, n),
        }
    )


def compute_views(sp500, end: str) -> dict[str, pd.DataFrame]:
    prices = sp500.prices[
        (sp500.prices["ticker"].isin(TICKERS)) & (sp500.prices["date"] >= "2019-01-01") & (sp500.prices["date"] <= end)
    ]
    dates = pd.DatetimeIndex(prices["date"].unique())
    return {
        "technical_features": technical_features(prices, benchmark_series(sp500.benchmark)),
        "alpha_features": alpha_features(prices),
        "fundamental_features": fundamental_features(prices, fundamentals_fixture()),
        "sentiment_features": sentiment_features(prices, documents_fixture(dates)),
    }


def materialized_repo(data_dir: Path, views: dict[str, pd.DataFrame], settings: FeatureStoreSettings) -> FeatureRepo:
    for view, frame in views.items():
        write_feature_file(data_dir, view, frame)
    repo = FeatureRepo.open(settings)
    repo.apply()
    for view in views:
        start, end = full_window(read_feature_file(data_dir, view)["event_timestamp"])
        repo.materialize(start, end, [view])
    return repo


@pytest.fixture(scope="module")
def local_repo(sp500, tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("feast-local")
    views = compute_views(sp500, "2022-12-28")
    repo = materialized_repo(data_dir, views, FeatureStoreSettings(data_dir=str(data_dir)))
    return repo, views, data_dir


def latest_rows(views: dict[str, pd.DataFrame], service_features: list[str]) -> pd.DataFrame:
    merged = None
    for frame in views.values():
        last = frame.sort_values("date").groupby("ticker").tail(1).set_index("ticker")
        cols = [c for c in service_features if c in last.columns]
        if cols:
            merged = last[cols] if merged is None else merged.join(last[cols])
    assert merged is not None
    return merged.loc[TICKERS, service_features]


def test_apply_registers_every_view_and_service_with_descriptions(local_repo) -> None:
    repo, _, _ = local_repo
    store = repo.store
    # Model views, the market views (feature_repo.market) and the sentinel's data_quality view.
    specs = {**FEATURES_BY_VIEW, **{v: fields for v, (_, fields) in MARKET_VIEWS.items()}}
    specs[DATA_QUALITY_VIEW] = DATA_QUALITY_FEATURES
    assert {v.name for v in store.list_feature_views()} == set(specs)
    assert {s.name for s in store.list_feature_services()} == set(SERVICES)
    for view in store.list_feature_views():
        assert [f.name for f in view.features] == names(specs[view.name])
        assert all(f.description for f in view.features), view.name


@pytest.mark.parametrize("service", SERVICES)
def test_online_vector_equals_the_offline_vector_for_the_latest_date(local_repo, service: str) -> None:
    repo, views, _ = local_repo
    online = repo.online(service, TICKERS).set_index("ticker")
    feature_names = list(online.columns)
    if service == ALLOCATOR_SERVICE:
        assert feature_names == list(ALLOCATOR_FEATURES)
    latest_date = views["technical_features"]["date"].max()
    entity = pd.DataFrame({"ticker": TICKERS, "event_timestamp": pd.Timestamp(latest_date, tz="UTC")})
    offline = repo.historical(service, entity).set_index("ticker").loc[TICKERS, feature_names]
    expected = latest_rows(views, feature_names)
    # Exactly equal: the same transform output, read through both paths.
    np.testing.assert_array_equal(online.loc[TICKERS].to_numpy(dtype=float), offline.to_numpy(dtype=float))
    np.testing.assert_array_equal(online.loc[TICKERS].to_numpy(dtype=float), expected.to_numpy(dtype=float))
    assert np.isfinite(online.to_numpy(dtype=float)).any()


def test_historical_features_are_joined_point_in_time(local_repo) -> None:
    repo, views, _ = local_repo
    tech = views["technical_features"].set_index(["ticker", "date"])
    entity = pd.DataFrame(
        {
            "ticker": ["AAPL", "AAPL", "MSFT", "JPM"],
            # a Friday, the Saturday after it, a Monday, and a date before any feature exists
            "event_timestamp": pd.to_datetime(["2021-06-04", "2021-06-05", "2021-06-07", "2018-01-02"], utc=True),
        }
    )
    frame = repo.historical("technical_model_v1", entity)
    frame = frame.set_index(["ticker", frame["event_timestamp"].dt.tz_convert(None)])
    assert frame.loc[("AAPL", pd.Timestamp("2021-06-04")), "ret_21d"] == tech.loc[("AAPL", "2021-06-04"), "ret_21d"]
    # The weekend sees Friday's features, never Monday's.
    assert frame.loc[("AAPL", pd.Timestamp("2021-06-05")), "ret_21d"] == tech.loc[("AAPL", "2021-06-04"), "ret_21d"]
    assert frame.loc[("MSFT", pd.Timestamp("2021-06-07")), "rsi_14"] == tech.loc[("MSFT", "2021-06-07"), "rsi_14"]
    assert pd.isna(frame.loc[("JPM", pd.Timestamp("2018-01-02")), "ret_21d"])


def test_incremental_materialisation_picks_up_new_sessions(sp500, tmp_path: Path) -> None:
    settings = FeatureStoreSettings(data_dir=str(tmp_path))
    early = compute_views(sp500, "2022-06-30")
    repo = materialized_repo(tmp_path, {"technical_features": early["technical_features"]}, settings)
    before = repo.online("allocator_v1", ["AAPL"]).iloc[0]
    late = compute_views(sp500, "2022-12-28")["technical_features"]
    write_feature_file(tmp_path, "technical_features", late)
    repo.materialize_incremental(
        full_window(read_feature_file(tmp_path, "technical_features")["event_timestamp"])[1],
        ["technical_features"],
    )
    after = repo.online("allocator_v1", ["AAPL"]).iloc[0]
    newest = late[late["ticker"] == "AAPL"].iloc[-1]
    assert after["vol_21d"] == newest["vol_21d"] != before["vol_21d"]


def test_redis_urls_convert_to_feast_connection_strings() -> None:
    assert redis_url_to_feast("redis://127.0.0.1:6390/2") == "127.0.0.1:6390,db=2"
    assert redis_url_to_feast("rediss://:s%40cret@cache:6380") == "cache:6380,password=s@cret,ssl=true"
    with pytest.raises(FeatureStoreConfigError):
        redis_url_to_feast("http://cache:6379")


def test_production_settings_require_their_endpoints() -> None:
    with pytest.raises(ValueError, match="PORTFOLIO_OS_REDIS_URL"):
        FeatureStoreSettings(environment="production", data_dir="/tmp/x")


@pytest.mark.slow
def test_production_configuration_against_real_redis_and_postgres(
    sp500, tmp_path: Path, redis_url: str, database_url: str
) -> None:
    settings = FeatureStoreSettings(
        environment="production", data_dir=str(tmp_path), redis_url=redis_url, registry_url=database_url
    )
    views = compute_views(sp500, "2022-12-28")
    repo = materialized_repo(tmp_path, views, settings)
    assert repo.store.config.online_store.type == "redis"
    assert repo.store.config.registry.registry_type == "sql"
    # A second process-level store reads the same registry from PostgreSQL.
    reopened = FeatureRepo.open(settings)
    assert {s.name for s in reopened.store.list_feature_services()} == set(SERVICES)
    for service in SERVICES:
        online = reopened.online(service, TICKERS).set_index("ticker")
        expected = latest_rows(views, list(online.columns))
        np.testing.assert_array_equal(online.loc[TICKERS].to_numpy(dtype=float), expected.to_numpy(dtype=float))
