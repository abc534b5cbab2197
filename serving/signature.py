"""Comparison of a registered version's signature with what a server expects, in words a human can act on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType

from serving.errors import SignatureMismatch

_SHOWN = 8  # names listed per kind of difference; the count says how many more there are


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown if len(items) <= _SHOWN else f"{shown} (+{len(items) - _SHOWN} more)"


def name_differences(expected: Sequence[str], actual: Sequence[str]) -> list[str]:
    """Every way ``actual`` differs from ``expected`` (missing, extra, duplicated, reordered names).

    Args:
        expected: the ordered names the server expects (the feature service's features).
        actual: the ordered names the registered version records.

    Returns:
        One sentence per kind of difference; empty when the two sequences are identical.
    """
    if list(expected) == list(actual):
        return []
    problems: list[str] = []
    missing = [n for n in expected if n not in set(actual)]
    extra = [n for n in actual if n not in set(expected)]
    duplicated = sorted({n for n in actual if list(actual).count(n) > 1})
    if missing:
        problems.append(f"missing from the model: {_listed(missing)}")
    if extra:
        problems.append(f"not in the feature service: {_listed(extra)}")
    if duplicated:
        problems.append(f"duplicated in the model: {_listed(duplicated)}")
    if not problems:
        # Same names, other order: name the first position that differs, which is what breaks scoring.
        pos = next(i for i, (e, a) in enumerate(zip(expected, actual, strict=True)) if e != a)
        problems.append(f"reordered: position {pos} is '{actual[pos]}' in the model, '{expected[pos]}' in the service")
    return problems


def typed_inputs(signature: ModelSignature | None, what: str) -> list[tuple[str, DataType]]:
    """The ordered (name, type) of a column signature's inputs.

    Raises:
        SignatureMismatch: no signature, a tensor signature or unnamed inputs.
    """
    if signature is None or signature.inputs is None:
        raise SignatureMismatch(f"{what} has no input signature; training must log one")
    specs = signature.inputs.inputs
    if not all(isinstance(s, ColSpec) and s.name for s in specs):
        raise SignatureMismatch(f"{what} has a tensor or unnamed input signature; expected one named column per input")
    return [(str(s.name), s.type) for s in specs]


def signature_inputs(signature: ModelSignature | None, what: str) -> list[str]:
    """The ordered input names of a column signature whose inputs are all FP64 (``double``).

    Raises:
        SignatureMismatch: no signature, a tensor signature, unnamed or non-double inputs.
    """
    inputs = typed_inputs(signature, what)
    check_types(inputs, {name: DataType.double for name, _ in inputs}, what)
    return [name for name, _ in inputs]


def check_types(inputs: Sequence[tuple[str, DataType]], expected: Mapping[str, DataType], what: str) -> None:
    """Raise :class:`SignatureMismatch` naming every input whose type is not ``expected[name]``."""
    wrong = [f"{name} ({kind}, expected {expected[name]})" for name, kind in inputs if kind != expected[name]]
    if wrong:
        raise SignatureMismatch(f"{what} has inputs of the wrong type: {_listed(wrong)}")


def check_names(expected: Sequence[str], actual: Sequence[str], what: str, against: str) -> None:
    """Raise :class:`SignatureMismatch` naming every difference between ``actual`` and ``expected``."""
    problems = name_differences(expected, actual)
    if problems:
        raise SignatureMismatch(f"{what} does not match {against}: {'; '.join(problems)}")
