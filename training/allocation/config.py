"""The ``allocation:`` section of a run configuration: the allocator's environment, RL budget and backtest.

The universe, benchmark and the train/valid/test segments are the ``signals:`` section's, so the
signal models and the allocator are judged on the same untouched test segment. RL trains on the
train segment, is selected on walk-forward windows laid over the valid segment, and is backtested
with every baseline on the test segment.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from feature_repo.contract import ENSEMBLE
from feature_repo.schema import ALLOCATOR_FEATURES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OverlayConfig(_Strict):
    """The RL policy as an overlay on a base book (:mod:`training.allocation.overlay`).

    ``none`` keeps the policy choosing the whole book (logits over the slots and cash). Any other
    base is tilted by the action, ``w ∝ base * exp(scale * tanh(a))``: a zero action holds the base.
    Only ``none`` and ``inverse_variance`` can be served (a request carries one row of features per
    ticker, no returns window); ``min_variance`` and ``hrp`` are backtested but not registered.
    """

    base: Literal["none", "inverse_variance", "min_variance", "hrp"] = "none"
    scale: float = Field(0.5, gt=0, le=10, description="The tilt's bound: factors in [e**-scale, e**scale].")


class RLConfig(_Strict):
    """The Ray Tune search over RL algorithms, hyper-parameters and seeds."""

    algorithms: tuple[Literal["ppo", "a2c"], ...] = Field(("ppo", "a2c"), min_length=1)
    num_samples: int = Field(4, ge=1, description="Trials (algorithm x hyper-parameters x seed) to run.")
    timesteps: int = Field(20_000, ge=64, description="Environment steps per trial.")
    evaluations: int = Field(4, ge=1, description="Validation checks per trial (ASHA's time axis).")
    max_concurrent_trials: int = Field(2, ge=1)
    seed: int = 0
    episode_sessions: int = Field(252, ge=5, description="Sessions per training episode (random start).")
    net_arch: tuple[int, ...] = Field((64, 64), min_length=1, description="Hidden layers of the policy MLP.")
    walk_forward_retrain: bool = Field(
        False,
        description="Re-train the chosen policy every refit_every sessions of the test segment on the history "
        "before each window (one training run per window), instead of testing the policy chosen once.",
    )
    smoke_test: bool = Field(False, description="One trial of a few hundred steps: a wiring check.")
    overlay: OverlayConfig = Field(default_factory=OverlayConfig)

    @model_validator(mode="after")
    def _overlay_retrain(self) -> Self:
        if self.walk_forward_retrain and self.overlay.base in ("min_variance", "hrp"):
            raise ValueError(
                f"walk_forward_retrain is not supported with the overlay base {self.overlay.base!r} "
                "(its base books are computed once, for the train and valid segments)"
            )
        return self


class TopkConfig(_Strict):
    """The top-k-by-ensemble-score strategy with limited turnover (Qlib's TopkDropout idea)."""

    k: int = Field(5, ge=1)
    n_drop: int = Field(1, ge=1, description="Held names replaced at most per rebalance.")


class MonteCarloConfig(_Strict):
    n_paths: int = Field(1000, ge=10)
    block: int = Field(21, ge=1, description="Block length in sessions (keeps a month of autocorrelation).")
    seed: int = 0


class AllocationRunConfig(_Strict):
    """How the allocator is trained, selected and backtested against the classic strategies."""

    enabled: bool = True
    window: int = Field(
        1,
        ge=1,
        description="Sessions of features in the observation. The features already summarise 21-252 "
        "sessions; 1 keeps the served model to a single online read.",
    )
    rebalance_every: int = Field(5, ge=1, description="Sessions between trades: 1 daily, 5 weekly.")
    max_assets: int = Field(
        32,
        ge=2,
        description="Slots of the RL policy's observation and action: one policy serves any membership of at "
        "most this many names (more members than slots: held names first, then by slot_feature).",
    )
    slot_feature: str | None = Field(
        "vol_63d", description="The allocator feature whose rank (ascending) orders the slots; null: panel order."
    )
    cost_bps: float = Field(10.0, ge=0, lt=5000, description="Commission + half-spread per side.")
    slippage_bps: float = Field(5.0, ge=0, lt=5000, description="Market impact per side.")
    max_weight: float = Field(0.2, gt=0, le=1)
    turnover_cap: float | None = Field(None, gt=0, le=2, description="One-way turnover allowed per trade.")
    allow_cash: bool = True
    risk_penalty: float = Field(0.0, ge=0)
    lookback: int = Field(252, ge=20, description="Sessions of returns behind each classic optimiser.")
    refit_every: int = Field(252, ge=1, description="Sessions between re-fits in the walk-forward backtest.")
    validation_windows: int = Field(4, ge=1, description="Walk-forward windows over the valid segment.")
    score_model: str = Field(ENSEMBLE, description="Whose out-of-sample test scores the top-k strategy ranks.")
    topk: TopkConfig = Field(default_factory=TopkConfig)
    monte_carlo: MonteCarloConfig = Field(default_factory=MonteCarloConfig)
    rl: RLConfig = Field(default_factory=RLConfig)

    @model_validator(mode="after")
    def _feasible(self) -> Self:
        if self.topk.n_drop > self.topk.k:
            raise ValueError(f"topk.n_drop ({self.topk.n_drop}) cannot exceed topk.k ({self.topk.k})")
        if self.slot_feature is not None and self.slot_feature not in ALLOCATOR_FEATURES:
            raise ValueError(
                f"slot_feature {self.slot_feature!r} is not an allocator feature {list(ALLOCATOR_FEATURES)}"
            )
        if not self.allow_cash and self.max_assets * self.max_weight < 1.0 - 1e-9:
            raise ValueError(
                f"max_assets {self.max_assets} x max_weight {self.max_weight} < 1: a fully invested book "
                "cannot respect the cap; raise either or allow cash"
            )
        return self
