"""A trained RL policy as a backtest ``Strategy``, optionally re-trained walk-forward.

In the walk-forward backtester a decision at the close of t sees the history through t - 1, so
the policy's observation is the last ``window`` sessions of that history's features, normalised
as in training, plus the drifted book: exactly what the environment (which trades at t on
features lagged one session) shows it. A test checks the two give the same returns.

With a :class:`Retrain` spec, :meth:`PolicyStrategy.fit` trains a fresh policy with the chosen
algorithm and hyper-parameters on the history it is given (the backtester calls it every
``refit_every`` sessions), so the RL allocator is evaluated walk-forward like any strategy that
learns: each window's policy has seen nothing after the window's start.

Overlay (``env.overlay`` other than ``none``, :mod:`training.allocation.overlay`): the action tilts
a base book formed at each decision from the same history: the inverse-variance book of the slot
names from their ``vol_63d`` at the last close, or the classic optimiser (``base_optimiser``) on
the trailing returns, i.e. the classic strategy's own book on that rebalance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from training.allocation.env import WINDOW_BASES, EnvConfig, PortfolioEnv, masked_features
from training.allocation.observation import (
    assign_slots,
    build_observation,
    build_slot_observation,
    normalise_features,
)
from training.allocation.panel import MarketPanel
from training.allocation.policy import PolicyParams, export_policy, policy_action
from training.allocation.results import FloatArray
from training.allocation.strategy import Strategy
from training.allocation.weights import (
    BASE_VOL_FEATURE,
    constrained_target,
    inverse_variance_base,
    overlay_slot_target,
    overlay_target,
    slot_target,
)
from training.errors import TrainingError


@dataclass(frozen=True)
class Retrain:
    """How :meth:`PolicyStrategy.fit` re-trains: the chosen trial's hyper-parameters and a step budget."""

    hyper_parameters: dict[str, Any]
    timesteps: int
    episode_length: int
    net_arch: tuple[int, ...]


class PolicyStrategy:
    """Target weights from a numpy policy over the features it was trained on (by name)."""

    def __init__(
        self,
        name: str,
        policy: PolicyParams,
        env: EnvConfig,
        feature_names: tuple[str, ...],
        *,
        retrain: Retrain | None = None,
        base_optimiser: Strategy | None = None,
    ) -> None:
        if env.overlay in WINDOW_BASES and base_optimiser is None:
            raise TrainingError(f"{name}: the overlay base {env.overlay!r} needs its optimiser (base_optimiser)")
        if env.overlay == "inverse_variance" and BASE_VOL_FEATURE not in feature_names:
            raise TrainingError(f"{name}: the inverse-variance base reads {BASE_VOL_FEATURE!r}, not a policy feature")
        self.base_optimiser = base_optimiser
        self.name = name
        self.policy = policy
        self.env = env
        self.feature_names = feature_names
        self.retrain = retrain
        self.fits = 0

    def _columns(self, history: MarketPanel) -> list[int]:
        missing = [f for f in self.feature_names if f not in history.feature_names]
        if missing:
            raise TrainingError(f"{self.name}: the panel lacks the policy's feature(s) {missing}")
        return [history.feature_names.index(f) for f in self.feature_names]

    def fit(self, history: MarketPanel) -> None:
        """Re-train on ``history`` (through the session before the next decision) when asked to."""
        if self.retrain is None:
            return
        import torch

        from training.allocation.rl import build_model

        torch.set_num_threads(1)
        columns = self._columns(history)
        own = history.with_features(
            np.ascontiguousarray(history.features[:, :, columns]), self.feature_names
        ).with_feature_lag(1)
        if self.env.overlay in WINDOW_BASES:
            raise TrainingError(f"{self.name}: walk-forward re-training is not supported with a window base")
        env = PortfolioEnv(own, replace(self.env, episode_length=self.retrain.episode_length))
        model = build_model(self.retrain.hyper_parameters, env, self.retrain.net_arch)
        model.learn(total_timesteps=self.retrain.timesteps)
        self.policy = export_policy(model.policy)
        self.fits += 1

    def target(self, history: MarketPanel, current: FloatArray) -> FloatArray:
        window = self.env.window
        if history.n_sessions < window:
            raise TrainingError(
                f"{self.name}: needs {window} sessions of features, the history holds {history.n_sessions}"
            )
        columns = self._columns(history)
        available = None if history.available is None else history.available[-window:]
        features = normalise_features(masked_features(history.features[-window:][:, :, columns], available))
        present = history.available_at(history.n_sessions - 1)
        env = self.env
        if env.overlay != "none":
            return self._overlay(history, current, features, present, columns)
        if env.max_assets is None:
            weights, _ = constrained_target(
                policy_action(self.policy, build_observation(features, current)),
                current,
                max_weight=env.max_weight,
                turnover_cap=env.turnover_cap,
                allow_cash=env.allow_cash,
                present=None if history.available is None else present,
            )
            return weights
        key = self._key(history, columns)
        slots = assign_slots(key, present, current > 0.0, env.max_assets)
        obs = build_slot_observation(features, current, slots, present[slots], env.max_assets)
        weights, _ = slot_target(
            policy_action(self.policy, obs),
            current,
            slots,
            present[slots],
            env.max_assets,
            max_weight=env.max_weight,
            turnover_cap=env.turnover_cap,
            allow_cash=env.allow_cash,
        )
        return weights

    def _overlay(
        self,
        history: MarketPanel,
        current: FloatArray,
        features: npt.NDArray[np.float32],
        present: npt.NDArray[np.bool_],
        columns: list[int],
    ) -> FloatArray:
        """The base book of this decision tilted by the policy's action (the environment's ``_overlay``)."""
        env = self.env
        if env.max_assets is None:
            names = np.arange(history.n_assets)
            obs = build_observation(features, current)
        else:
            names = assign_slots(self._key(history, columns), present, current > 0.0, env.max_assets)
            obs = build_slot_observation(features, current, names, present[names], env.max_assets)
        if env.overlay == "inverse_variance":
            vol = history.features[-1, names, columns[self.feature_names.index(BASE_VOL_FEATURE)]]
            base: FloatArray = np.zeros(history.n_assets)
            base[names] = inverse_variance_base(vol, present[names], env.max_weight)
        else:
            assert self.base_optimiser is not None
            base = np.asarray(self.base_optimiser.target(history, current), dtype=np.float64)
        action = policy_action(self.policy, obs)
        if env.max_assets is None:
            weights, _ = overlay_target(
                action,
                base,
                current,
                scale=env.overlay_scale,
                max_weight=env.max_weight,
                turnover_cap=env.turnover_cap,
                allow_cash=env.allow_cash,
                present=None if history.available is None else present,
            )
            return weights
        weights, _ = overlay_slot_target(
            action,
            current,
            names,
            present[names],
            env.max_assets,
            base=base,
            scale=env.overlay_scale,
            max_weight=env.max_weight,
            turnover_cap=env.turnover_cap,
            allow_cash=env.allow_cash,
        )
        return weights

    def _key(self, history: MarketPanel, columns: list[int]) -> FloatArray:
        """The slot order's values at the history's last close (the environment's ``slot_feature``)."""
        if self.env.slot_feature is None:
            return np.zeros(history.n_assets)
        if self.env.slot_feature not in self.feature_names:
            raise TrainingError(f"{self.name}: slot_feature {self.env.slot_feature!r} is not a policy feature")
        column = columns[self.feature_names.index(self.env.slot_feature)]
        key: FloatArray = history.features[-1, :, column].astype(np.float64)
        return key
