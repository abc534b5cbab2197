"""The portfolio forecast: the shared bootstrap, reproducibility, ordered bands, bounds named (SYNTHETIC returns)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from api.errors import InvalidRequestError, UnknownTickersError
from api.forecast import check_horizons, check_weight_sum, portfolio_history, simulate
from api.market_data import MarketData, ReturnWindow
from api.market_schemas import HorizonForecastPublic
from feature_repo.bootstrap import horizon_outcomes, stationary_bootstrap_indices
from feature_repo.market import return_window_frame
from training.allocation.performance import block_bootstrap

STAMP = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def _windows(matrix: np.ndarray, tickers: list[str]) -> dict[str, ReturnWindow]:
    sessions = np.busday_offset(np.datetime64("2021-01-04"), np.arange(matrix.shape[0]), roll="forward")
    return {t: ReturnWindow(matrix[:, j].copy(), sessions, STAMP, t) for j, t in enumerate(tickers)}


def _returns(n: int = 400, names: int = 3, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    market = rng.normal(0.0004, 0.01, (n, 1))
    return market + rng.normal(0.0, 0.008, (n, names))


def test_the_forecast_draws_the_paths_training_draws() -> None:
    r = _returns(300, 1)[:, 0]
    (outcome,) = horizon_outcomes(
        r[stationary_bootstrap_indices(300, n_paths=200, horizon=60, block=10, rng=np.random.default_rng(4))], [60]
    )
    boot = block_bootstrap(r, block=10, n_paths=200, horizon=60, seed=4)
    np.testing.assert_allclose(outcome.cumulative_return + 1.0, boot.terminal_wealth)
    np.testing.assert_allclose(outcome.max_drawdown, boot.max_drawdown)


def test_path_outcomes_match_a_direct_computation() -> None:
    paths = np.random.default_rng(2).normal(0.0, 0.02, (7, 30))
    for o in horizon_outcomes(paths, [2, 10, 30]):
        h = o.horizon
        equity = np.cumprod(1.0 + paths[:, :h], axis=1)
        peak = np.maximum(np.maximum.accumulate(equity, axis=1), 1.0)
        np.testing.assert_allclose(o.cumulative_return, equity[:, -1] - 1.0)
        np.testing.assert_allclose(o.max_drawdown, np.minimum((equity / peak - 1.0).min(axis=1), 0.0))
        np.testing.assert_allclose(o.volatility, paths[:, :h].std(axis=1, ddof=1) * np.sqrt(252))


def test_the_same_seed_gives_the_same_answer_and_bands_are_ordered() -> None:
    history = portfolio_history(_windows(_returns(), ["A", "B", "C"]), {"A": 0.5, "B": 0.3, "C": 0.2})

    def run(seed: int) -> list[HorizonForecastPublic]:
        return simulate(history.returns, [21, 63, 252], n_paths=1000, block=21, seed=seed, loss_threshold=0.1)

    first = run(7)
    assert first == run(7) and first != run(8)
    for horizon in first:
        for bands in (horizon.cumulative_return, horizon.max_drawdown, horizon.volatility):
            values = [bands.p5, bands.p25, bands.p50, bands.p75, bands.p95]
            assert values == sorted(values), (horizon.horizon, values)
        assert horizon.max_drawdown.p95 <= 0.0 and 0.0 <= horizon.loss_probability <= 1.0
    # Nested horizons share paths: the spread of outcomes widens with the horizon.
    spreads = [h.cumulative_return.p95 - h.cumulative_return.p5 for h in first]
    assert spreads == sorted(spreads)


def test_a_constant_return_compounds_exactly() -> None:
    matrix = np.full((100, 2), 0.001)
    history = portfolio_history(_windows(matrix, ["A", "B"]), {"A": 0.4, "B": 0.6})
    (horizon,) = simulate(history.returns, [50], n_paths=100, block=5, seed=0, loss_threshold=0.05)
    assert horizon.cumulative_return.p5 == pytest.approx(1.001**50 - 1.0)
    assert horizon.cumulative_return.p95 == pytest.approx(1.001**50 - 1.0)
    assert horizon.max_drawdown.p5 == 0.0 and horizon.loss_probability == 0.0


def test_the_history_is_the_sessions_every_held_name_has_a_return() -> None:
    matrix = _returns(300, 3)
    matrix[:120, 1] = np.nan  # B listed later
    matrix[:50, 2] = np.nan
    windows = _windows(matrix, ["A", "B", "C"])
    history = portfolio_history(windows, {"A": 0.5, "B": 0.5, "C": 0.0})
    assert history.returns.size == 180 and history.limited_by == ["B"]
    np.testing.assert_allclose(history.returns, matrix[120:, :2] @ np.array([0.5, 0.5]))
    assert history.first == dt.date.fromisoformat(str(windows["A"].sessions[120]))
    with pytest.raises(
        InvalidRequestError,
        match=r"horizon 252 is beyond the data: .* cover 180 sessions .*limited by the history of B.* at most 180",
    ):
        check_horizons(history, [21, 252])
    assert check_horizons(history, [63, 21, 63]) == [21, 63]
    matrix[-1, 0] = np.nan
    with pytest.raises(InvalidRequestError, match=r"no return on the last session .* for A"):
        portfolio_history(_windows(matrix, ["A", "B", "C"]), {"A": 1.0})


def test_weights_off_one_are_refused_naming_the_sum() -> None:
    check_weight_sum({"A": 0.3333, "B": 0.3333, "C": 0.3334})
    with pytest.raises(InvalidRequestError, match=r"weights sum to 0\.9; they must sum to 1 within 0\.001"):
        check_weight_sum({"A": 0.5, "B": 0.4})


def test_the_return_window_view_lines_up_the_tickers_on_one_calendar() -> None:
    dates = pd.bdate_range("2023-01-02", periods=10)
    daily = pd.DataFrame(
        {
            "ticker": ["A"] * 10 + ["B"] * 4,
            "date": list(dates) + list(dates[6:]),
            "ret_1d": np.r_[np.arange(10) / 100, np.arange(4) / 10],
        }
    )
    frame = return_window_frame(daily, window=8).set_index("ticker")
    assert list(frame.index) == ["A", "B"] and (frame["date"] == dates[-1]).all()
    rows = {
        str(t): (list(r), list(s)) for t, r, s in zip(frame.index, frame["returns"], frame["sessions"], strict=True)
    }
    (a, a_sessions), (b, b_sessions) = rows["A"], rows["B"]
    assert len(a) == len(b) == 8 and a[-1] == 0.09 and np.isnan(b[:4]).all() and b[4:] == [0.0, 0.1, 0.2, 0.3]
    assert a_sessions == b_sessions
    assert a_sessions[-1] == dates[-1].date().toordinal() - dt.date(1970, 1, 1).toordinal()


class _FakeStore:
    """Answers ``read_refs`` for the return_window view like Feast's ``to_dict`` and counts the calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def read_refs(self, refs: list[str], entity_rows: list[dict[str, str]]) -> dict[str, list[object]]:
        tickers = [row["ticker"] for row in entity_rows]
        self.calls.append(tickers)
        known = [t != "NOPE" for t in tickers]
        return {
            "returns": [[0.01, 0.02] if k else None for k in known],
            "returns__ts": [1_700_000_000 if k else 0 for k in known],
            "sessions": [[19000, 19001] if k else None for k in known],
        }


def test_return_windows_are_cached_for_the_feature_cache_life_and_unknown_tickers_named() -> None:
    now = [0.0]
    store = _FakeStore()
    market = MarketData(store, cache_seconds=5.0, clock=lambda: now[0])  # type: ignore[arg-type]
    first = market.return_windows(["A", "B"])
    assert list(first) == ["A", "B"] and first["A"].returns.tolist() == [0.01, 0.02]
    now[0] = 4.0
    market.return_windows(["B", "C"])
    assert store.calls == [["A", "B"], ["C"]]  # B still fresh: only C read
    now[0] = 10.0
    market.return_windows(["A"])
    assert store.calls[-1] == ["A"]
    with pytest.raises(UnknownTickersError, match="NOPE"):
        market.return_windows(["A", "NOPE"])
