"""The gymnasium portfolio environment: one step is one rebalance, and every cost it computes is charged.

Timing (as in :mod:`training.allocation.panel`): a decision at the close of session ``t`` sees the
normalised features of sessions ``t - window + 1 .. t`` and the book as it drifted through
``returns[t]``. It trades at that close, and the new book drifts over ``returns[t + 1 .. t + k]``
(``k`` = ``rebalance_every``) until the next decision at ``t + k``. The last period stops at the
panel's last session, so it may be shorter than ``k``.

Costs (the convention of :mod:`training.evaluation.topk`): the trade's one-way turnover
``u = sum |w_new - w_drifted|`` costs ``c = u * (cost_bps + slippage_bps) / 1e4`` of equity at
the trade close, and the period's net return is ``(1 - c) * prod(1 + gross_s) - 1``: exactly
``-c`` when prices do not move. Uninvested weight is cash and earns 0.

Reward: ``log(1 + net) - risk_penalty * net ** 2`` for the period's net return. The log term makes
the episode's summed reward the log of its final wealth (growth-optimal without the penalty); the
square is a variance penalty (for daily returns the mean is small, so ``E[net ** 2]`` is about the
variance), a mean-variance utility with ``risk_penalty`` as the risk aversion per period.

Names that enter and leave (a panel's masks, :mod:`training.allocation.panel`): the logits of
names unavailable at the decision session get no weight (the softmax runs over the available names
and cash), so nothing is bought without a close or outside the universe; a held name that became
unavailable is sold as far as the turnover cap allows, except a held name without a close (a
halt), which cannot trade and keeps its weight. A held name whose series ends (a delisting: its
last close, then none; or the bar before a series break) is sold at that close, inside a period
too, and the sale pays the costs. Unavailable names have no features: they are left out of the
cross-sectional normalisation and show zeros.

Fixed width (``max_assets``): the observation and the action have ``max_assets`` slots whatever the
panel's width, so one policy serves any membership. At each decision the slots are filled point in
time (:func:`training.allocation.observation.assign_slots`: held names first, then by the
``slot_feature`` rank) and the observation carries a mask (1 for a slot whose name may be traded);
empty and masked slots get no weight. Without ``max_assets`` the width is the panel's (a fixed
universe, names in panel order).

Overlay (``overlay`` other than ``none``, :mod:`training.allocation.overlay`): the action no longer
is the book's logits but a tilt of a base book formed at each decision, ``w ∝ base * exp(scale *
tanh(a))`` over the tradable slot names (and cash with ``allow_cash``, whose base share is what the
base leaves uninvested), then capped and turnover-limited like any target
(:func:`training.allocation.weights.overlay_target`). A zero action holds the base. The base is
``inverse_variance`` (``1 / vol_63d**2`` of the tradable slot names, from the features the
observation shows) or a window optimiser's book from a table (``bases``: decision date -> ``[N]``
weights, computed on the returns through the session before); with a table, random episode starts
fall on the rebalance grid from the first decision session, the dates the table covers.

Start: every episode starts from all cash at its first decision session, with or without
``allow_cash``, and the first trade pays for buying the book (turnover = the share invested), as
a new mandate would; no book is ever handed over for free. ``allow_cash`` decides only whether the
policy may choose to keep cash (one extra logit). Without it the book is fully invested after the
first trade unless a turnover cap spreads the way in over several decisions.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import gymnasium
import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from training.allocation.observation import (
    FEATURE_CLIP,
    assign_slots,
    build_observation,
    build_slot_observation,
    normalise_features,
    slot_observation_size,
)
from training.allocation.panel import MarketPanel
from training.allocation.results import StrategyResult
from training.allocation.weights import (
    BASE_VOL_FEATURE,
    OVERLAY_BASES,
    check_feasible,
    constrained_target,
    drift,
    hold_unpriced,
    inverse_variance_base,
    overlay_slot_target,
    overlay_target,
    sell_exits,
    slot_target,
)
from training.errors import TrainingError

FloatArray = npt.NDArray[np.float64]
ObsArray = npt.NDArray[np.float32]
ActionArray = npt.NDArray[np.floating[Any]]

# Logits beyond +-10 change nothing a policy needs: e**20 already puts 5e8 times more weight on one
# asset than on another. The bound keeps PPO's Gaussian actions in a range where they still matter.
ACTION_BOUND: Final = 10.0
# Bases estimated on a trailing window of returns: precomputed per decision session (a solve each),
# handed to the environment as a table, and the decisions kept on the rebalance grid they cover.
WINDOW_BASES: Final = ("min_variance", "hrp")
# One-way turnover is at most 2, so 5,000 bps or more per side would wipe out the book in one trade:
# such a value is almost surely a fraction or a percentage misread as basis points.
MAX_COST_BPS: Final = 5000.0


@dataclass(frozen=True)
class EnvConfig:
    """How the environment trades and rewards.

    Attributes:
        window: sessions of features in the observation, ending at the decision session.
        cost_bps: commission per side, in basis points of the traded amount.
        slippage_bps: extra cost per side, in basis points of the traded amount.
        risk_penalty: coefficient of the squared period net return subtracted from the reward
            (a variance penalty; 0 rewards log growth alone).
        max_weight: the largest weight one asset may have, in (0, 1].
        turnover_cap: the largest one-way turnover of one trade, or None for no cap.
        allow_cash: whether the policy has a cash logit (may keep part of the book uninvested).
        episode_length: decisions per episode from a random start drawn from the seeded RNG, or
            None to run from the first decision session to the panel's end.
        rebalance_every: sessions between decisions (1 daily, 5 weekly); one step is one period.
        max_assets: slots of a fixed-width observation and action (module docstring), or None for
            the panel's own width.
        slot_feature: the feature whose rank (ascending) orders the slots; None: panel order.
        overlay: the base book the action tilts (``none``: the action is the logits of the book
            itself; ``inverse_variance``: ``1 / vol_63d**2`` of the names in the slots, from the
            observation's own row; ``min_variance`` or ``hrp``: the classic optimiser on the
            trailing returns, handed over as a table, module docstring "Overlay").
        overlay_scale: the tilt's bound: each name's base weight is multiplied by a factor in
            ``[e**-scale, e**scale]`` before the book is renormalised.
    """

    window: int = 20
    cost_bps: float = 10.0
    slippage_bps: float = 5.0
    risk_penalty: float = 0.0
    max_weight: float = 1.0
    turnover_cap: float | None = None
    allow_cash: bool = True
    episode_length: int | None = None
    rebalance_every: int = 1
    max_assets: int | None = None
    slot_feature: str | None = None
    overlay: str = "none"
    overlay_scale: float = 0.5

    def __post_init__(self) -> None:
        _require_count("window", self.window)
        if self.overlay not in OVERLAY_BASES:
            raise TrainingError(f"overlay must be one of {list(OVERLAY_BASES)}, got {self.overlay!r}")
        scale = _number("overlay_scale", self.overlay_scale)
        if not (math.isfinite(scale) and 0.0 < scale <= 10.0):
            raise TrainingError(f"overlay_scale must be in (0, 10], got {self.overlay_scale!r}")
        _require_count("rebalance_every", self.rebalance_every)
        if self.max_assets is not None:
            _require_count("max_assets", self.max_assets)
        if self.episode_length is not None:
            _require_count("episode_length", self.episode_length)
        for name in ("cost_bps", "slippage_bps", "risk_penalty"):
            value = _number(name, getattr(self, name))
            if not (math.isfinite(value) and value >= 0):
                raise TrainingError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.cost_bps + self.slippage_bps >= MAX_COST_BPS:
            raise TrainingError(
                f"cost_bps + slippage_bps = {self.cost_bps + self.slippage_bps} bps per side would wipe out "
                f"the book in one trade (limit {MAX_COST_BPS:g}): both are basis points (10 bps = 0.1%)"
            )
        if not 0.0 < _number("max_weight", self.max_weight) <= 1.0:
            raise TrainingError(f"max_weight must be in (0, 1], got {self.max_weight!r}")
        if self.turnover_cap is not None:
            cap = _number("turnover_cap", self.turnover_cap)
            if not (math.isfinite(cap) and cap > 0):
                raise TrainingError(f"turnover_cap must be None or a finite number > 0, got {cap!r}")
        if not isinstance(self.allow_cash, bool):
            raise TrainingError(f"allow_cash must be True or False, got {self.allow_cash!r}")

    @property
    def cost_rate(self) -> float:
        """Cost per unit of one-way turnover, as a fraction of equity (commission plus slippage)."""
        return (self.cost_bps + self.slippage_bps) / 1e4


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TrainingError(f"{name} must be a number, got {value!r}")
    return float(value)


def _require_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise TrainingError(f"{name} must be an integer >= 1, got {value!r}")


class PortfolioEnv(gymnasium.Env[ObsArray, ActionArray]):
    """Long-only allocation over a :class:`MarketPanel`'s tickers plus cash (module docstring: timing, costs).

    Observation: a flat float32 ``Box`` laid out as in :func:`build_observation`; features within
    ``+-FEATURE_CLIP``, weights within ``[0, 1]``. The panel's features are normalised once, here,
    so a step only slices the precomputed array.

    Action: ``N`` logits (``N + 1`` with ``allow_cash``, the last one cash), a float32 ``Box`` in
    ``[-ACTION_BOUND, ACTION_BOUND]``; values outside are clipped to it. They become weights through
    :func:`training.allocation.weights.constrained_target` (stable softmax, max weight, turnover cap).

    Episodes: from the first decision session (``window - 1``) to the panel's end, or, with
    ``episode_length``, ``episode_length`` decisions from a start drawn by ``self.np_random``.
    ``terminated`` is True when the data end, ``truncated`` when ``episode_length`` decisions are
    made before that. ``reset(options={"start": t})`` pins the start to decision session ``t``.

    ``info`` after a step: ``date`` and ``session`` (the trade session), ``gross_return`` and
    ``net_return`` over the period, ``cost`` (fraction of equity), ``turnover``, ``trade_share``
    (share of the wanted trade the turnover cap allowed), ``weights`` (after trading),
    ``session_gross_returns`` ``[m]`` and ``session_weights`` ``[m, N]`` (each session of the
    period, after its drift), and ``wealth`` (net equity since reset, from 1.0).
    """

    def __init__(
        self, panel: MarketPanel, config: EnvConfig, *, bases: Mapping[np.datetime64, FloatArray] | None = None
    ) -> None:
        panel.require_window(config.window)
        if config.overlay in WINDOW_BASES and bases is None:
            raise TrainingError(
                f"overlay {config.overlay!r} needs its base books per decision session (overlay.base_table)"
            )
        if config.overlay == "inverse_variance" and BASE_VOL_FEATURE not in panel.feature_names:
            raise TrainingError(
                f"overlay 'inverse_variance' reads {BASE_VOL_FEATURE!r}, which the panel lacks: "
                f"{list(panel.feature_names)}"
            )
        self._bases = bases if config.overlay in WINDOW_BASES else None
        width = panel.n_assets if config.max_assets is None else config.max_assets
        check_feasible(width, config.max_weight, config.allow_cash)
        self.panel = panel
        self.config = config
        self.width = width
        self.first_decision = config.window - 1
        self.last_start = self._last_start()
        self._features = normalise_features(masked_features(panel.features, panel.available))
        self._returns = np.ascontiguousarray(panel.returns, dtype=np.float64)
        self._key = slot_key(panel, config.slot_feature)
        n_feat = config.window * width * len(panel.feature_names)
        n_obs = (
            n_feat
            if config.max_assets is None
            else slot_observation_size(config.window, width, len(panel.feature_names)) - 2 * width - 1
        )
        n_state = width + 1 if config.max_assets is None else 2 * width + 1
        self.action_space = spaces.Box(
            -ACTION_BOUND, ACTION_BOUND, shape=(width + 1 if config.allow_cash else width,), dtype=np.float32
        )
        self.observation_space = spaces.Box(
            low=np.concatenate([np.full(n_obs, -FEATURE_CLIP), np.zeros(n_state)]).astype(np.float32),
            high=np.concatenate([np.full(n_obs, FEATURE_CLIP), np.ones(n_state)]).astype(np.float32),
            dtype=np.float32,
        )
        self._t = self.first_decision
        self._weights: FloatArray = np.zeros(panel.n_assets)
        self._slots: npt.NDArray[np.intp] = np.arange(0)
        self._steps = 0
        self._wealth = 1.0

    @property
    def session(self) -> int:
        """The current decision session (a position in the panel)."""
        return self._t

    @property
    def wealth(self) -> float:
        """Net equity since the last reset, starting from 1.0."""
        return self._wealth

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsArray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = self._start(options)
        self._weights = np.zeros(self.panel.n_assets)
        self._steps = 0
        self._wealth = 1.0
        return self._observation(), {"date": self.panel.dates[self._t], "session": self._t, "wealth": 1.0}

    def step(self, action: ActionArray) -> tuple[ObsArray, float, bool, bool, dict[str, Any]]:
        config, t = self.config, self._t
        if t >= self.panel.n_sessions - 1:
            raise TrainingError(f"the episode reached the data end ({self.panel.dates[t]}): call reset() first")
        logits = np.clip(np.asarray(action, dtype=np.float64), -ACTION_BOUND, ACTION_BOUND)
        drifted = self._weights
        traded, share = self._target(logits, drifted, t)
        turnover = float(np.abs(traded - drifted).sum())
        cost = config.cost_rate * turnover
        end = min(t + config.rebalance_every, self.panel.n_sessions - 1)
        session_gross, session_weights, session_sold = self._hold(traded, t, end)
        session_costs = config.cost_rate * session_sold
        growth = float(np.prod(1.0 + session_gross))
        net = (1.0 - cost) * growth * float(np.prod(1.0 - session_costs)) - 1.0
        reward = math.log1p(net) - config.risk_penalty * net * net
        self._t, self._weights = end, session_weights[-1].copy()  # info holds the path; callers may edit it
        self._steps += 1
        self._wealth *= 1.0 + net
        terminated = end >= self.panel.n_sessions - 1
        truncated = not terminated and config.episode_length is not None and self._steps >= config.episode_length
        info = {
            "date": self.panel.dates[t],
            "session": t,
            "gross_return": growth - 1.0,
            "net_return": net,
            "cost": cost,
            "turnover": turnover,
            "trade_share": share,
            "weights": traded,
            "session_gross_returns": session_gross,
            "session_weights": session_weights,
            "session_costs": session_costs,
            "session_turnover": session_sold,
            "wealth": self._wealth,
        }
        return self._observation(), reward, terminated, truncated, info

    def _target(self, logits: FloatArray, drifted: FloatArray, t: int) -> tuple[FloatArray, float]:
        """The book after trading at ``t`` on ``logits`` (panel order) and the share of the wanted trade made."""
        config, available = self.config, self.panel.available
        if config.overlay != "none":
            traded, share = self._overlay(logits, drifted, t)
        elif config.max_assets is None:
            traded, share = constrained_target(
                logits,
                drifted,
                max_weight=config.max_weight,
                turnover_cap=config.turnover_cap,
                allow_cash=config.allow_cash,
                present=None if available is None else available[t],
            )
        else:
            traded, share = slot_target(
                logits,
                drifted,
                self._slots,
                self.panel.available_at(t)[self._slots],
                self.width,
                max_weight=config.max_weight,
                turnover_cap=config.turnover_cap,
                allow_cash=config.allow_cash,
            )
        return hold_unpriced(traded, drifted, None if self.panel.priced is None else self.panel.priced[t]), share

    def _overlay(self, action: FloatArray, drifted: FloatArray, t: int) -> tuple[FloatArray, float]:
        """The base book at ``t`` tilted by ``action`` (:func:`~training.allocation.weights.overlay_target`)."""
        config, panel = self.config, self.panel
        now = panel.available_at(t)
        if config.max_assets is None:
            names = np.arange(panel.n_assets)
            base = self.base_at(t, names, now)
            return overlay_target(
                action,
                base,
                drifted,
                scale=config.overlay_scale,
                max_weight=config.max_weight,
                turnover_cap=config.turnover_cap,
                allow_cash=config.allow_cash,
                present=None if panel.available is None else now,
            )
        tradable = now[self._slots]
        return overlay_slot_target(
            action,
            drifted,
            self._slots,
            tradable,
            self.width,
            base=self.base_at(t, self._slots, tradable),
            scale=config.overlay_scale,
            max_weight=config.max_weight,
            turnover_cap=config.turnover_cap,
            allow_cash=config.allow_cash,
        )

    def base_at(self, t: int, names: npt.NDArray[np.intp], tradable: npt.NDArray[np.bool_]) -> FloatArray:
        """``[N]`` the base book of the decision at ``t``: over ``names`` (the slots) for ``inverse_variance``.

        The inverse-variance base is built over the tradable names of the slots alone, from the
        volatility the observation's row carries (the features known at the decision), exactly as
        the served allocator builds it from a request's rows. A table base is the optimiser's book
        for that session (computed on the returns through the session before).
        """
        panel = self.panel
        if self.config.overlay == "inverse_variance":
            vol = panel.features[t, names, panel.feature_names.index(BASE_VOL_FEATURE)]
            out: FloatArray = np.zeros(panel.n_assets)
            out[names] = inverse_variance_base(vol, tradable, self.config.max_weight)
            return out
        assert self._bases is not None
        day = panel.dates[t]
        if day not in self._bases:
            raise TrainingError(f"no {self.config.overlay} base book for the decision session {day}")
        return self._bases[day]

    def _hold(self, weights: FloatArray, t: int, end: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Drift ``weights`` over sessions ``t + 1 .. end``: each session's gross return, weights and forced sales.

        Only held names move a book, so the drift runs over them alone (a few hundred of an
        exchange's thousands of ever-listed names).
        """
        held = np.flatnonzero(weights)
        book = weights[held]
        gross = np.empty(end - t)
        sold = np.zeros(end - t)
        path = np.zeros((end - t, weights.size))
        exits = self.panel.exits
        for i in range(end - t):
            book, gross[i] = drift(book, self._returns[t + 1 + i, held])
            if exits is not None:
                book, sold[i] = sell_exits(book, exits[t + 1 + i, held])
            path[i, held] = book
        return gross, path, sold

    def _observation(self) -> ObsArray:
        t, window = self._t, self.config.window
        features = self._features[t - window + 1 : t + 1]
        if self.config.max_assets is None:
            return build_observation(features, self._weights)
        available = self.panel.available_at(t)
        self._slots = assign_slots(self._key[t], available, self._weights > 0.0, self.width)
        return build_slot_observation(features, self._weights, self._slots, available[self._slots], self.width)

    def _start(self, options: dict[str, Any] | None) -> int:
        """The first decision session of an episode: pinned by ``options["start"]``, drawn, or the first."""
        start = (options or {}).get("start")
        if start is not None:
            if isinstance(start, bool) or not isinstance(start, numbers.Integral):
                raise TrainingError(f"options['start'] must be a session position, got {start!r}")
            if not self.first_decision <= int(start) <= self.last_start:
                raise TrainingError(
                    f"options['start'] = {start} is outside the possible starts "
                    f"{self.first_decision}..{self.last_start} for window {self.config.window}"
                )
            return int(start)
        if self.config.episode_length is None:
            return self.first_decision
        if self._bases is not None:  # a table base covers the rebalance grid from the first decision
            every = self.config.rebalance_every
            steps = (self.last_start - self.first_decision) // every
            return self.first_decision + every * int(self.np_random.integers(0, steps + 1))
        return int(self.np_random.integers(self.first_decision, self.last_start + 1))

    def _last_start(self) -> int:
        """The latest session an episode may start at and still make ``episode_length`` decisions."""
        length, every = self.config.episode_length, self.config.rebalance_every
        n_sessions = self.panel.n_sessions
        if length is None:
            return n_sessions - 2
        needed = self.config.window + length * every
        if n_sessions < needed:
            raise TrainingError(
                f"episode_length {length} x rebalance_every {every} after a window of {self.config.window} "
                f"needs {needed} sessions, but the panel holds only {n_sessions}: shorten the episode or the window"
            )
        return n_sessions - 1 - length * every


def masked_features(
    features: npt.NDArray[np.float32], available: npt.NDArray[np.bool_] | None
) -> npt.NDArray[np.float32]:
    """Features with NaN where a name is unavailable: it has no features and no say in the normalisation."""
    if available is None:
        return features
    return np.where(available[:, :, None], features, np.float32(np.nan))


def slot_key(panel: MarketPanel, feature: str | None) -> FloatArray:
    """``[T, N]`` the values that order the slots: ``feature``'s, or 0 everywhere (panel order)."""
    if feature is None:
        return np.zeros((panel.n_sessions, panel.n_assets))
    if feature not in panel.feature_names:
        raise TrainingError(f"slot_feature {feature!r} is not among the panel's features {list(panel.feature_names)}")
    key: FloatArray = panel.features[:, :, panel.feature_names.index(feature)].astype(np.float64)
    return key


def run_policy(
    env: PortfolioEnv, policy: Callable[[ObsArray], npt.ArrayLike], *, name: str = "policy"
) -> StrategyResult:
    """One deterministic episode from the first decision session, as a daily backtest result.

    Used to backtest trained policies on the same accounting they were trained on. The episode
    runs until the data end (or ``episode_length`` decisions, if the environment has one: build it
    with ``episode_length=None`` for a full backtest). Daily series cover the first decision session
    to the last session reached: the first day's return is minus the first buy's cost (as in
    :mod:`training.evaluation.topk`), a trade's cost lands on its trade session, and sessions
    between rebalances carry their drift. ``prod(1 + returns)`` equals ``env.wealth``.

    Args:
        env: the environment (its panel is the backtest window).
        policy: observation -> action (logits), called once per decision.
        name: the strategy's name in the result.
    """
    panel = env.panel
    obs, _ = env.reset(options={"start": env.first_decision})
    start = env.session
    days = panel.n_sessions - start
    gross, costs, turnover = np.zeros(days), np.zeros(days), np.zeros(days)
    weights = np.zeros((days, panel.n_assets))
    last, done = 0, False
    while not done:
        obs, _, terminated, truncated, info = env.step(np.asarray(policy(obs), dtype=np.float64))
        i = info["session"] - start
        # A forced exit may have been charged on this session already (the previous period's end).
        costs[i] = 1.0 - (1.0 - costs[i]) * (1.0 - info["cost"])
        turnover[i] += info["turnover"]
        weights[i] = info["weights"]
        last = i + len(info["session_gross_returns"])
        gross[i + 1 : last + 1] = info["session_gross_returns"]
        costs[i + 1 : last + 1] = info["session_costs"]
        turnover[i + 1 : last + 1] = info["session_turnover"]
        weights[i + 1 : last + 1] = info["session_weights"]
        done = terminated or truncated
    kept = slice(0, last + 1)
    return StrategyResult(
        name=name,
        dates=panel.dates[start : start + last + 1],
        returns=((1.0 + gross) * (1.0 - costs) - 1.0)[kept],
        gross_returns=gross[kept],
        weights=weights[kept],
        cash=1.0 - weights[kept].sum(axis=1),
        turnover=turnover[kept],
        costs=costs[kept],
        tickers=panel.tickers,
        rebalance_every=env.config.rebalance_every,
        label=panel.label,
    )
