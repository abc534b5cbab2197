"""Corporate actions: the user's file, adjustment factors, detection and the mask/adjust/fail policy.

Every price series here is synthetic, generated in the test (flat or gently drifting closes with a
planted consolidation, split or capital reconstruction); none of it is market data.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_repo.tables import ADJUSTMENT_FACTOR_COLUMNS
from tests.corporate_action_fixtures import DAYS, JUMP, bars, consolidated, drifting, write_actions, write_text
from training.corporate_actions.actions import load_actions
from training.corporate_actions.config import CorporateActionsConfig
from training.corporate_actions.detect import SUSPECT_COLUMNS, detect_suspects
from training.corporate_actions.factors import action_factors, apply_factors, with_adjusted_volume
from training.corporate_actions.policy import BREAK_REASON, REPORT_NAME, process_prices, write_report
from training.errors import HealthCheckFailed, IngestError

# ---------------------------------------------------------------- the file and its factors


@pytest.mark.parametrize(
    ("row", "price_factor", "volume_factor"),
    [
        ("split,2,", 0.5, 2.0),
        ("consolidation,0.1,", 10.0, 0.1),
        ("bonus_issue,1.1,", 1 / 1.1, 1.1),
        ("capital_return,,0.5", 0.95, 1.0),  # (10 - 0.5) / 10
        ("special_dividend,,1", 0.9, 1.0),
        ("dividend,,0.2", 0.98, 1.0),
        ("demerger,0.8,", 0.8, 1.0),  # the parent keeps 80% of its value
        ("demerger,,2", 0.8, 1.0),  # 2.00 of value per share demerged from a 10.00 close
    ],
)
def test_each_kind_has_its_hand_computed_factor(
    tmp_path: Path, row: str, price_factor: float, volume_factor: float
) -> None:
    prices = bars("AAA", np.full(10, 10.0))
    actions = load_actions(write_actions(tmp_path / "actions.csv", f"AAA,{DAYS[5]:%Y-%m-%d},{row}"))
    factors = action_factors(prices, actions.assign(origin="file"))
    assert list(factors.columns) == list(ADJUSTMENT_FACTOR_COLUMNS)
    [factor] = factors.itertuples(index=False)
    assert factor.price_factor == pytest.approx(price_factor)
    assert factor.volume_factor == pytest.approx(volume_factor)
    adjusted = apply_factors(prices, factors)
    # Bars before the ex-date carry the factor; the ex-date and later keep the raw close.
    assert adjusted["adj_close"].to_numpy()[:5] == pytest.approx(10.0 * price_factor)
    assert (adjusted["adj_close"].to_numpy()[5:] == 10.0).all()
    assert adjusted["close"].equals(prices["close"]) and adjusted["volume"].equals(prices["volume"])


def test_cumulative_factors_multiply_later_actions_and_leave_the_latest_price_raw(tmp_path: Path) -> None:
    closes = np.full(10, 10.0)
    closes[6:] = 5.0  # a 2:1 split on bar 6; before it a 0.5 dividend on bar 3
    prices = bars("AAA", closes)
    path = write_actions(tmp_path / "a.csv", f"AAA,{DAYS[6]:%Y%m%d},split,2,", f"AAA,{DAYS[3]:%Y-%m-%d},dividend,,0.5")
    factors = action_factors(prices, load_actions(path).assign(origin="file"))
    assert list(factors["cum_price_factor"]) == pytest.approx([0.95 * 0.5, 0.5])
    assert list(factors["cum_volume_factor"]) == pytest.approx([2.0, 2.0])
    adj = apply_factors(prices, factors)["adj_close"].to_numpy()
    assert adj[:3] == pytest.approx(10 * 0.95 * 0.5)
    assert adj[3:6] == pytest.approx(5.0)
    assert adj[-1] == closes[-1]


def test_a_planted_consolidation_is_continuous_in_adj_close_and_volume(tmp_path: Path) -> None:
    closes, volume = consolidated()
    prices = bars("AAA", closes, volume)
    actions = load_actions(write_actions(tmp_path / "a.csv", f"AAA,{DAYS[JUMP]:%Y-%m-%d},consolidation,0.1,"))
    factors = action_factors(prices, actions.assign(origin="file"))
    adjusted = apply_factors(prices, factors)
    returns = np.diff(np.log(adjusted["adj_close"].to_numpy()))
    # Raw: a x10.4 jump; adjusted: only the day's own +4% is left.
    assert returns[JUMP - 1] == pytest.approx(math.log(1.04), abs=1e-3)
    assert np.abs(np.delete(returns, JUMP - 1)).max() < 0.03
    assert adjusted["adj_close"].iat[-1] == closes[-1]
    vol = with_adjusted_volume(adjusted, factors)["volume"].to_numpy()
    assert vol == pytest.approx(np.full(40, 200_000.0))  # 2M shares before = 200k consolidated shares
    assert (prices["volume"].to_numpy()[:JUMP] == 2_000_000.0).all()  # the raw frame is untouched


def test_malformed_action_files_name_file_line_and_field(tmp_path: Path) -> None:
    path = write_actions(
        tmp_path / "bad.csv",
        "AAA,2010-13-01,split,2,",
        "BBB,2010-01-05,reverse_split,2,",
        "CCC,2010-01-05,consolidation,10,",
        "DDD,2010-01-05,dividend,0.5,",
        "EEE,2010-01-05,capital_return,,abc",
        "FFF,2010-01-05,split,2,,extra",
        "GGG,2010-01-05,demerger,0.9,1.5",
        "HHH,2010-01-05,split,2,",
        "HHH,2010-01-05,split,3,",
    )
    with pytest.raises(IngestError) as caught:
        load_actions(path)
    message = str(caught.value)
    for line, field in [
        (2, "ex_date"),
        (3, "kind"),
        (4, "ratio"),
        (5, "ratio"),
        (6, "amount"),
        (8, "ratio"),
        (10, "ex_date"),
    ]:
        assert f"{path}, row {line}, column '{field}'" in message
    assert f"{path}, row 7: 6 fields, the header has 5" in message
    assert "1:10 is 0.1" in message  # the convention is spelled out where it is broken
    with pytest.raises(IngestError, match=r"row 1, column 'amount': column missing"):
        load_actions(write_text(tmp_path / "nohead.csv", "ticker,ex_date,kind,ratio\n"))


def test_a_cash_amount_above_the_close_names_its_line(tmp_path: Path) -> None:
    prices = bars("AAA", np.full(10, 2.0))
    actions = load_actions(write_actions(tmp_path / "a.csv", f"AAA,{DAYS[5]:%Y-%m-%d},capital_return,,2.5"))
    with pytest.raises(IngestError, match=r"a\.csv, row 2, column 'amount'.*not below the last close"):
        action_factors(prices, actions.assign(origin="file"))


# ---------------------------------------------------------------- detection


def test_detection_proposes_1_10_with_evidence_and_its_csv_loads_as_an_actions_file(tmp_path: Path) -> None:
    closes, volume = consolidated(day_move=1.04)
    prices = pd.concat([bars("AAA", closes, volume), bars("BBB", drifting(20.0, seed=1))], ignore_index=True)
    suspects = detect_suspects(prices)
    assert list(suspects.columns) == list(SUSPECT_COLUMNS)
    [s] = suspects.itertuples(index=False)
    assert (s.ticker, s.ex_date, s.kind, s.match) == ("AAA", f"{DAYS[JUMP]:%Y-%m-%d}", "consolidation", "1:10")
    assert s.ratio == pytest.approx(0.1) and math.isnan(float(str(s.amount)))
    assert s.day_ratio == pytest.approx(10.4, rel=0.02)
    assert s.close_before == closes[JUMP - 1] and s.close_after == closes[JUMP]
    assert s.level_ratio == pytest.approx(10.4, rel=0.05) and s.bars_after == 5
    assert s.volume_ratio == pytest.approx(0.1)  # the share count fell tenfold: the volume too
    report = tmp_path / "reports" / REPORT_NAME
    write_report(suspects, report)
    confirmed = load_actions(report)  # the evidence columns are ignored by the loader
    assert confirmed[["ticker", "kind"]].to_numpy().tolist() == [["AAA", "consolidation"]]
    assert confirmed["date"].iat[0] == DAYS[JUMP] and confirmed["ratio"].iat[0] == pytest.approx(0.1)
    # Once confirmed, the action is applied and never reported again.
    config = CorporateActionsConfig(file=report)
    outcome = process_prices(prices, config)
    assert outcome.suspects.empty and outcome.confirmed == 1 and outcome.breaks.empty
    # An action for a ticker that is not loaded (a typo; a short row, its missing fields empty) adjusts
    # nothing, and the summary says so.
    typo = write_text(tmp_path / "typo.csv", report.read_text() + f"AAX,{DAYS[JUMP]:%Y-%m-%d},consolidation,0.1\n")
    assert (
        "1 confirmed action(s) applied (1 matched no bar)"
        in process_prices(prices, CorporateActionsConfig(file=typo)).summary()
    )


def test_detection_tells_splits_reconstructions_and_bad_ticks_apart() -> None:
    split = drifting(40.0)
    split[JUMP:] = np.round(split[JUMP:] / 2 * 0.97, 4)  # a 2:1 split on a -3% day
    rebuilt = drifting(164.5, seed=2)
    rebuilt[JUMP:] = np.round(rebuilt[JUMP:] * 1.63 / 164.5, 4)  # a capital reconstruction: no ratio fits
    tick = drifting(3.0, seed=3)
    tick[JUMP] *= 10  # one bad print, undone the next day
    penny = np.full(40, 0.001)
    penny[JUMP:] = 0.002  # one price step of a sub-cent share: x2 that persists, but tick noise
    frames = [bars("SPL", split), bars("REC", rebuilt), bars("TCK", tick), bars("PNY", penny)]
    prices = pd.concat(frames, ignore_index=True)
    suspects = detect_suspects(prices).set_index("ticker")
    assert sorted(suspects.index) == ["REC", "SPL"]
    assert (suspects.at["SPL", "kind"], suspects.at["SPL", "ratio"], suspects.at["SPL", "match"]) == (
        "split",
        2.0,
        "2:1",
    )
    assert (suspects.at["REC", "kind"], suspects.at["REC", "match"]) == ("capital_return", "none")
    # The proposed amount reproduces the day's move: (close_before - amount) / close_before.
    rec = suspects.loc["REC"]
    assert (rec["close_before"] - rec["amount"]) / rec["close_before"] == pytest.approx(rec["day_ratio"])


def test_a_jump_at_a_known_break_is_not_a_suspect() -> None:
    closes, _ = consolidated()
    prices = bars("AAA", closes)
    breaks = pd.DataFrame({"ticker": ["AAA"], "date": [DAYS[JUMP]], "reason": ["code_reused"], "detail": ["x"]})
    assert len(detect_suspects(prices)) == 1
    assert detect_suspects(prices, breaks=breaks).empty


# ---------------------------------------------------------------- policies


def test_policy_mask_writes_a_break_and_keeps_the_prices_and_adjust_applies_the_proposal() -> None:
    closes, volume = consolidated()
    prices = bars("AAA", closes, volume)
    masked = process_prices(prices, CorporateActionsConfig(policy="mask"))
    assert masked.breaks[["ticker", "date", "reason"]].to_numpy().tolist() == [["AAA", DAYS[JUMP], BREAK_REASON]]
    assert "consolidation ratio 0.1 proposed (match 1:10" in str(masked.breaks["detail"].iat[0])
    assert masked.prices["adj_close"].equals(prices["adj_close"]) and masked.factors.empty
    adjusted = process_prices(prices, CorporateActionsConfig(policy="adjust"))
    assert adjusted.breaks.empty and list(adjusted.factors["origin"]) == ["suspect"]
    assert len(adjusted.suspects) == 1  # still reported, so a person can confirm it
    adj = adjusted.prices["adj_close"].to_numpy()
    ratio = adj[JUMP] / adj[JUMP - 1]
    assert ratio == pytest.approx(1.04, rel=0.01)


def test_policy_fail_refuses_with_the_suspects_listed() -> None:
    closes, _ = consolidated()
    outcome = process_prices(bars("AAA", closes), CorporateActionsConfig(policy="fail"))
    with pytest.raises(
        HealthCheckFailed, match=r"(?s)1 suspected unadjusted corporate action.*AAA 2010-02-01: consolidation"
    ):
        outcome.raise_if_refused(Path("report.csv"))


def test_the_health_check_shares_the_persistence_test_and_skips_returns_across_breaks() -> None:
    from training.health import run_health_checks

    closes = drifting(40.0)
    closes[JUMP:] = np.round(closes[JUMP:] / 2, 4)  # an exact 2:1 split left unadjusted
    prices = bars("SPL", closes)
    assert run_health_checks(prices).check("unadjusted_splits").affected == 1
    breaks = pd.DataFrame({"ticker": ["SPL"], "date": [DAYS[JUMP]]})
    masked = run_health_checks(prices, breaks=breaks)
    assert masked.check("unadjusted_splits").affected == 0 and masked.check("outlier_returns").affected == 0
