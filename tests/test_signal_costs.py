"""One cost model for a signal run's tables (issue 18): the plain top-k table and the portfolio
section charge the same rates (costs by liquidity, or flat), and each names them above its table.

Prices are SYNTHETIC (seeded random walks with volume, from tests/test_universe.py); these tests
check behaviour, never quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_universe import SIGNALS, _store_with, rule, synthetic_prices
from training.config import load_config
from training.evaluation.config import CostConfig
from training.evaluation.liquidity import TradeCosts, describe_costs
from training.evaluation.suite import EQUAL_WEIGHT, PortfolioSettings, portfolio_report
from training.signals.config import SignalRunConfig
from training.signals.evaluate import baselines
from training.signals.inputs import SignalInputs, load_inputs
from training.signals.portfolio_report import portfolio_data

ROOT = Path(__file__).resolve().parents[1]
LIQUIDITY = {"brokerage_bps": 8, "half_spread_bps": [5, 12, 30], "impact_coefficient": 1.0, "adv_sessions": 20}
# A book of AUD 20k over names trading AUD 10k-80k a day: impact is a visible part of the cost.
EVALUATION = {"top_k": 2, "rebalance_every": 5, "book": {"book_aud": 20_000}}


def _inputs(tmp_path: Path, costs: dict[str, object], *, with_liquidity: bool = True) -> SignalInputs:
    path = _store_with(tmp_path, synthetic_prices())
    config = SignalRunConfig.model_validate(
        SIGNALS | {"universe": rule(top_n=5).model_dump(), "evaluation": EVALUATION, "costs": costs}
    )
    return load_inputs(config, path, repo=None, with_liquidity=with_liquidity)  # type: ignore[arg-type]  # repo only carried


def test_the_plain_table_pays_the_portfolio_sections_costs_by_liquidity(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path, {"liquidity": LIQUIDITY})
    assert inputs.liquidity is not None and inputs.liquidity.adv.shape == inputs.close.shape
    plain = baselines(inputs)
    # The portfolio section with the plain construction (no hold band, no replacement limit, no
    # cap: the config's book defaults) builds the very same books: same rates, same book size.
    data = portfolio_data(inputs)
    settings = PortfolioSettings.from_config(inputs.config.evaluation, inputs.config.costs, data.window)
    assert (
        settings.costs == TradeCosts.from_costs(inputs.config.costs) == TradeCosts(0.0008, (0.0005, 0.0012, 0.003), 1.0)
    )
    section = portfolio_report({}, data, settings, with_capacity=False)
    for name in ("momentum_12_1", "reversal_1m", EQUAL_WEIGHT):
        book, expected = plain[name][1], section.books[name]
        pd.testing.assert_series_equal(book.returns, expected.returns)
        assert book.costs is not None and expected.costs is not None
        pd.testing.assert_series_equal(book.costs, expected.costs)
    # The rates are by liquidity: above the brokerage alone, and the books differ from flat costs.
    momentum = plain["momentum_12_1"][1]
    assert momentum.costs is not None
    traded = momentum.turnover.to_numpy()
    assert (momentum.costs.to_numpy()[traded > 0] > 0.0008 * traded[traded > 0] * 1.01).all()
    flat = baselines(_inputs(tmp_path / "flat", {"bps_per_side": 8}))["momentum_12_1"][1]
    assert flat.metrics()["total_cost"] == pytest.approx(0.0008 * flat.turnover.sum())
    assert momentum.metrics()["total_cost"] > flat.metrics()["total_cost"]
    assert not np.allclose(momentum.returns.to_numpy(), flat.returns.to_numpy())
    # The guard trades nothing and asks for no ADV.
    assert _inputs(tmp_path / "guard", {"liquidity": LIQUIDITY}, with_liquidity=False).liquidity is None


def test_a_flat_run_reads_no_liquidity_and_the_cost_model_is_named(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path, {"bps_per_side": 20, "slippage_bps": 5})
    assert inputs.liquidity is None
    assert TradeCosts.from_costs(inputs.config.costs) == TradeCosts.flat(0.0025)
    assert describe_costs(inputs.config.costs, 1e6) == "flat 25 bps per side on every name (no liquidity model)"
    text = describe_costs(CostConfig.model_validate({"liquidity": LIQUIDITY}), 1e6)
    assert text.startswith("by liquidity: brokerage 8 bps + half-spread 5/12/30 bps by ADV tercile")
    assert "impact 1 x sigma_daily" in text and "ADV over 20 sessions" in text and "AUD 1,000,000" in text


def test_flat_costs_beside_costs_by_liquidity_are_refused_and_asx_dev_has_one_model() -> None:
    with pytest.raises(ValueError, match="bps_per_side and slippage_bps price flat costs only"):
        CostConfig.model_validate({"bps_per_side": 20, "slippage_bps": 5, "liquidity": LIQUIDITY})
    with pytest.raises(ValueError, match="slippage_bps price flat costs only"):
        CostConfig.model_validate({"slippage_bps": 5, "liquidity": LIQUIDITY})
    asx = load_config(ROOT / "configs" / "asx-dev.yaml").signals
    demo = load_config(ROOT / "configs" / "demo.yaml").signals
    assert asx is not None and demo is not None
    assert TradeCosts.from_costs(asx.costs) == TradeCosts(0.0008, (0.0005, 0.0012, 0.003), 1.0)
    assert TradeCosts.from_costs(demo.costs) == TradeCosts.flat(0.001)
