"""A trained policy as plain numpy: its deterministic forward pass, saved and loaded without torch.

Stable-Baselines3's ``MlpPolicy`` (PPO and A2C alike) acts deterministically as
``clip(action_net(policy_net(flatten(obs))), low, high)``: the mean of its Gaussian, clipped to
the action box. :func:`export_policy` copies those layers out of a trained SB3 policy; the
registered ``allocator`` model runs :func:`policy_action` on them, so a model server needs numpy
and nothing of torch or SB3. A test checks the two agree on random observations.

This file travels inside the registered model (``code_paths``): numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ACTIVATIONS: Final = ("tanh", "relu")


@dataclass(frozen=True, eq=False)
class PolicyParams:
    """The layers of a deterministic MLP policy.

    Attributes:
        weights: per layer, a ``[in, out]`` matrix; the last layer is the action head.
        biases: per layer, an ``[out]`` vector.
        activation: applied after every layer but the last (``tanh`` or ``relu``).
        action_low: the action box's lower bounds (``[n_actions]``).
        action_high: its upper bounds.
    """

    weights: tuple[FloatArray, ...]
    biases: tuple[FloatArray, ...]
    activation: str
    action_low: FloatArray
    action_high: FloatArray

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if len(self.weights) != len(self.biases) or not self.weights:
            raise ValueError("a policy needs as many bias vectors as weight matrices, and at least one layer")
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if w.ndim != 2 or b.shape != (w.shape[1],):
                raise ValueError(f"layer {i}: weight {w.shape} and bias {b.shape} do not fit")
            if i and w.shape[0] != self.weights[i - 1].shape[1]:
                raise ValueError(
                    f"layer {i} takes {w.shape[0]} inputs but layer {i - 1} gives {self.weights[i - 1].shape[1]}"
                )
        if self.action_low.shape != (self.weights[-1].shape[1],) or self.action_high.shape != self.action_low.shape:
            raise ValueError("the action bounds must have one value per action")

    @property
    def n_inputs(self) -> int:
        return int(self.weights[0].shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.weights[-1].shape[1])

    def save(self, path: Path) -> Path:
        """Write the layers to one ``.npz`` file (no pickle)."""
        arrays: dict[str, Any] = {
            "activation": np.array(self.activation),
            "low": self.action_low,
            "high": self.action_high,
        }
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        with path.open("wb") as handle:
            np.savez(handle, **arrays)
        return path

    @classmethod
    def load(cls, path: Path | str) -> PolicyParams:
        with np.load(path, allow_pickle=False) as data:
            n = sum(1 for k in data.files if k.startswith("w"))
            return cls(
                weights=tuple(data[f"w{i}"].astype(np.float64) for i in range(n)),
                biases=tuple(data[f"b{i}"].astype(np.float64) for i in range(n)),
                activation=str(data["activation"]),
                action_low=data["low"].astype(np.float64),
                action_high=data["high"].astype(np.float64),
            )


def policy_action(params: PolicyParams, observation: npt.ArrayLike) -> FloatArray:
    """The deterministic action for one observation ``[n_inputs]`` or a batch ``[k, n_inputs]``."""
    x = np.asarray(observation, dtype=np.float64)
    if x.shape[-1] != params.n_inputs:
        raise ValueError(f"the policy takes observations of {params.n_inputs} values, got {x.shape[-1]}")
    act = np.tanh if params.activation == "tanh" else (lambda v: np.maximum(v, 0.0))
    last = len(params.weights) - 1
    for i, (w, b) in enumerate(zip(params.weights, params.biases, strict=True)):
        x = x @ w + b
        if i < last:
            x = act(x)
    clipped: FloatArray = np.clip(x, params.action_low, params.action_high)
    return clipped


def export_policy(policy: Any) -> PolicyParams:
    """Copy a Stable-Baselines3 ``ActorCriticPolicy``'s actor layers out as numpy arrays.

    Raises:
        ValueError: a policy this forward pass cannot reproduce (a non-flatten feature extractor,
            squashed outputs, another activation or layer type).
    """
    import torch

    if type(policy.features_extractor).__name__ != "FlattenExtractor" or getattr(policy, "squash_output", False):
        raise ValueError("only MlpPolicy with a flatten extractor and unsquashed actions can be exported")
    activation = {torch.nn.Tanh: "tanh", torch.nn.ReLU: "relu"}.get(policy.activation_fn)
    if activation is None:
        raise ValueError(f"unsupported activation {policy.activation_fn}")
    linears: list[torch.nn.Linear] = []
    for module in policy.mlp_extractor.policy_net:
        if isinstance(module, torch.nn.Linear):
            linears.append(module)
        elif not isinstance(module, (torch.nn.Tanh, torch.nn.ReLU)):
            raise ValueError(f"unsupported layer {type(module).__name__} in the policy network")
    linears.append(policy.action_net)
    with torch.no_grad():
        weights = tuple(layer.weight.detach().cpu().numpy().astype(np.float64).T.copy() for layer in linears)
        biases = tuple(layer.bias.detach().cpu().numpy().astype(np.float64).copy() for layer in linears)
    space = policy.action_space
    return PolicyParams(
        weights, biases, activation, np.asarray(space.low, np.float64).copy(), np.asarray(space.high, np.float64).copy()
    )
