"""The registered allocator model (MLflow models-from-code): policy layers plus the observation and weight rules.

Logged with ``python_model=<this file>``, the policy's ``.npz`` as the artifact ``policy``,
``model_config`` (tickers in trained order, feature names, constraints) and ``code_paths`` =
``observation.py``, ``policy.py``, ``weights.py``: a model server runs exactly the code the
backtest ran, with nothing but MLflow, numpy and pandas.

Input: one row per ticker: ``ticker``, the allocator features (missing = NaN), ``current_weight``
(the book held now; missing = 0). Output: ``ticker`` and ``weight`` in the input's row order; the
cash weight is ``1 - sum(weight)``.

Two kinds of policy. A fixed-width policy (``max_assets`` in the model_config) has ``max_assets``
slots: a request may name any set of up to ``max_assets`` tickers, which fill the slots in the
order the environment used (held names first, then by ``slot_feature`` ascending), and more are
refused with a ValueError naming the limit. An older policy trained on a fixed universe (no
``max_assets``) takes any subset of its ``tickers`` (the others are neither normalised with nor
held), never a ticker outside them.

Overlay (``model_config["overlay"]`` = ``{"base": ..., "scale": ...}``; absent = ``none``): the
policy's action tilts a base book instead of being the book's logits. The served bases are those a
request can rebuild from its own rows: ``inverse_variance`` (``1 / vol_63d**2`` over the request's
tickers in the slots, capped at ``max_weight``, the environment's own function); a request with
no ``vol_63d`` for a name gives it the median of the others. ``min_variance`` and ``hrp`` need a
window of returns that a request does not carry: a model_config naming one is refused at load.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel  # type: ignore[attr-defined]

try:  # the project installed: training, tests
    from training.allocation.observation import (
        assign_slots,
        build_observation,
        build_slot_observation,
        normalise_features,
    )
    from training.allocation.policy import PolicyParams, policy_action
    from training.allocation.weights import (
        BASE_VOL_FEATURE,
        SERVABLE_BASES,
        constrained_target,
        inverse_variance_base,
        overlay_slot_target,
        overlay_target,
        slot_target,
    )
except ImportError:  # inside a model server: code_paths put the three files on sys.path
    from observation import (  # type: ignore[no-redef]
        assign_slots,
        build_observation,
        build_slot_observation,
        normalise_features,
    )
    from policy import PolicyParams, policy_action  # type: ignore[no-redef]
    from weights import (  # type: ignore[no-redef]
        BASE_VOL_FEATURE,
        SERVABLE_BASES,
        constrained_target,
        inverse_variance_base,
        overlay_slot_target,
        overlay_target,
        slot_target,
    )


class AllocatorPyfunc(PythonModel):  # type: ignore[misc]
    """Target weights for the tickers of a request, from their features and the current book."""

    def load_context(self, context: Any) -> None:
        cfg = context.model_config
        self.tickers: list[str] = [str(t) for t in cfg["tickers"]]
        self.features: list[str] = [str(f) for f in cfg["features"]]
        self.max_weight = float(cfg["max_weight"])
        cap = cfg.get("turnover_cap")
        self.turnover_cap = None if cap is None else float(cap)
        self.allow_cash = bool(cfg["allow_cash"])
        width = cfg.get("max_assets")
        self.max_assets = None if width is None else int(width)
        slot = cfg.get("slot_feature")
        self.slot_feature = None if slot is None else str(slot)
        if self.slot_feature is not None and self.slot_feature not in self.features:
            raise ValueError(
                f"model_config slot_feature {self.slot_feature!r} is not among its features {self.features}"
            )
        overlay = cfg.get("overlay") or {}
        self.overlay = str(overlay.get("base", "none"))
        self.overlay_scale = float(overlay.get("scale", 0.5))
        if self.overlay not in SERVABLE_BASES:
            raise ValueError(
                f"model_config overlay base {self.overlay!r} cannot be served: it needs a window of returns "
                f"and a request carries one row of features per ticker (servable: {list(SERVABLE_BASES)})"
            )
        if self.overlay == "inverse_variance" and BASE_VOL_FEATURE not in self.features:
            raise ValueError(f"the inverse-variance overlay reads {BASE_VOL_FEATURE!r}, not among {self.features}")
        self.policy = PolicyParams.load(context.artifacts["policy"])
        self.position = {t: i for i, t in enumerate(self.tickers)}

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if self.max_assets is not None:
            return allocate_slots(
                model_input,
                features=self.features,
                policy=self.policy,
                max_assets=self.max_assets,
                slot_feature=self.slot_feature,
                max_weight=self.max_weight,
                turnover_cap=self.turnover_cap,
                allow_cash=self.allow_cash,
                overlay=self.overlay,
                overlay_scale=self.overlay_scale,
            )
        return allocate(
            model_input,
            tickers=self.tickers,
            features=self.features,
            policy=self.policy,
            max_weight=self.max_weight,
            turnover_cap=self.turnover_cap,
            allow_cash=self.allow_cash,
            overlay=self.overlay,
            overlay_scale=self.overlay_scale,
        )


def allocate(
    rows: pd.DataFrame,
    *,
    tickers: list[str],
    features: list[str],
    policy: PolicyParams,
    max_weight: float,
    turnover_cap: float | None,
    allow_cash: bool,
    overlay: str = "none",
    overlay_scale: float = 0.5,
) -> pd.DataFrame:
    """Weights for ``rows`` (see the module docstring); a ValueError names any bad ticker or weight."""
    if "ticker" not in rows.columns:
        raise ValueError("the allocator needs a 'ticker' column")
    names = rows["ticker"].astype(str).tolist()
    position = {t: i for i, t in enumerate(tickers)}
    unknown = [t for t in names if t not in position]
    if unknown:
        raise ValueError(f"ticker(s) {unknown[:5]} are outside the allocator's trained universe of {len(tickers)}")
    if len(set(names)) != len(names):
        raise ValueError("a ticker appears twice in the request")
    index = np.array([position[t] for t in names], dtype=np.int64)
    n, f = len(tickers), len(features)
    values = np.full((1, n, f), np.nan)
    for j, name in enumerate(features):
        if name in rows.columns:
            values[0, index, j] = pd.to_numeric(rows[name], errors="coerce").to_numpy(np.float64)
    current = np.zeros(n)
    if "current_weight" in rows.columns:
        current[index] = np.nan_to_num(pd.to_numeric(rows["current_weight"], errors="coerce").to_numpy(np.float64))
    if (current < 0).any() or current.sum() > 1.0 + 1e-6:
        raise ValueError("current_weight must be long-only and sum to at most 1")
    present = np.zeros(n, dtype=bool)
    present[index] = True
    obs = build_observation(normalise_features(values), current)
    logits = policy_action(policy, obs)
    if overlay == "none":
        weights, _ = constrained_target(
            logits, current, max_weight=max_weight, turnover_cap=turnover_cap, allow_cash=allow_cash, present=present
        )
    else:
        base = inverse_variance_base(_base_vol(values, features, overlay), present, max_weight)
        weights, _ = overlay_target(
            logits,
            base,
            current,
            scale=overlay_scale,
            max_weight=max_weight,
            turnover_cap=turnover_cap,
            allow_cash=allow_cash,
            present=present,
        )
    return pd.DataFrame({"ticker": names, "weight": weights[index]}, index=rows.index)


def allocate_slots(
    rows: pd.DataFrame,
    *,
    features: list[str],
    policy: PolicyParams,
    max_assets: int,
    slot_feature: str | None,
    max_weight: float,
    turnover_cap: float | None,
    allow_cash: bool,
    overlay: str = "none",
    overlay_scale: float = 0.5,
) -> pd.DataFrame:
    """Weights for any set of up to ``max_assets`` tickers from a fixed-width policy (module docstring).

    Raises:
        ValueError: no ticker column, a repeated ticker, more tickers than slots, or a book that is
            not long-only.
    """
    names, values, current = _request_inputs(rows, features, max_assets)
    n = len(names)
    key = values[0, :, features.index(slot_feature)] if slot_feature in features else np.zeros(n)
    everyone = np.ones(n, dtype=bool)
    slots = assign_slots(key, everyone, current > 0.0, max_assets)
    obs = build_slot_observation(normalise_features(values), current, slots, everyone[slots], max_assets)
    action = policy_action(policy, obs)
    if overlay == "none":
        weights, _ = slot_target(
            action,
            current,
            slots,
            everyone[slots],
            max_assets,
            max_weight=max_weight,
            turnover_cap=turnover_cap,
            allow_cash=allow_cash,
        )
    else:
        base = np.zeros(n)
        base[slots] = inverse_variance_base(_base_vol(values, features, overlay)[slots], everyone[slots], max_weight)
        weights, _ = overlay_slot_target(
            action,
            current,
            slots,
            everyone[slots],
            max_assets,
            base=base,
            scale=overlay_scale,
            max_weight=max_weight,
            turnover_cap=turnover_cap,
            allow_cash=allow_cash,
        )
    return pd.DataFrame({"ticker": names, "weight": weights}, index=rows.index)


def _request_inputs(
    rows: pd.DataFrame, features: list[str], max_assets: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The request's tickers, its feature values ``[1, n, features]`` (NaN where absent) and current weights.

    Raises:
        ValueError: no ticker column, a repeated ticker, more tickers than slots, or a book that is
            not long-only.
    """
    if "ticker" not in rows.columns:
        raise ValueError("the allocator needs a 'ticker' column")
    names = rows["ticker"].astype(str).tolist()
    if len(set(names)) != len(names):
        raise ValueError("a ticker appears twice in the request")
    n = len(names)
    if n > max_assets:
        raise ValueError(
            f"the allocator serves at most {max_assets} tickers per request (its policy's width), got {n}: "
            "send fewer names, e.g. the universe's top members"
        )
    values = np.full((1, n, len(features)), np.nan)
    for j, name in enumerate(features):
        if name in rows.columns:
            values[0, :, j] = pd.to_numeric(rows[name], errors="coerce").to_numpy(np.float64)
    current = np.zeros(n)
    if "current_weight" in rows.columns:
        current = np.nan_to_num(pd.to_numeric(rows["current_weight"], errors="coerce").to_numpy(np.float64))
    if (current < 0).any() or current.sum() > 1.0 + 1e-6:
        raise ValueError("current_weight must be long-only and sum to at most 1")
    return names, values, current


def _base_vol(values: np.ndarray, features: list[str], overlay: str) -> np.ndarray:
    """The volatility the served base reads, ``[n]`` (raw request values; NaN where missing)."""
    if overlay not in SERVABLE_BASES or overlay == "none":
        raise ValueError(f"overlay base {overlay!r} cannot be served from a request's rows")
    if BASE_VOL_FEATURE not in features:
        raise ValueError(f"the inverse-variance overlay reads {BASE_VOL_FEATURE!r}, not among {features}")
    vol: np.ndarray = values[0, :, features.index(BASE_VOL_FEATURE)]
    return vol


mlflow.models.set_model(AllocatorPyfunc())
