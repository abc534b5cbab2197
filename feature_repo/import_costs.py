"""Import-time work a Portfolio OS process opts out of before Feast loads (defined once).

Feast decorates its classes with typeguard's ``@typechecked``. typeguard 4 instruments every method
of a decorated class when the module is imported, by re-parsing and recompiling its source: on this
project's 2-core machine that was about half of ``import feast`` (10.0-11.8 s with it, 4.6-5.2 s
without, same sitting), paid again by every process that loads Feast: each ``python -m training``
stage, the gateway, the monitoring jobs and the tests' subprocesses. The checks it adds guard
Feast's constructors against wrongly typed arguments; the project's feature definitions are fixed
code, built and checked by the tests, and production Python runs them the same way typeguard itself
does under ``python -O`` (where ``@typechecked`` returns its target untouched).

Only process entry points call :func:`skip_typeguard_instrumentation` (never an import of this
package), so a library user's own typeguard is untouched. Standard library only: an entry point can
call it first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

T = TypeVar("T")
_MARK: Final = "_portfolio_os_no_instrumentation"


def _typechecked(target: T | None = None, **_options: Any) -> T | Callable[[T], T]:
    """typeguard's ``@typechecked`` as ``python -O`` runs it: the target, unchanged (bare or with options)."""
    if target is None:
        return lambda decorated: decorated
    return target


setattr(_typechecked, _MARK, True)


def skip_typeguard_instrumentation() -> bool:
    """Make ``typeguard.typechecked`` return its target in this process; call it before Feast loads.

    Returns:
        True when typeguard is installed (and now skipped), False when it is not (nothing to skip).
    """
    try:
        import typeguard
    except ImportError:
        return False
    typeguard.typechecked = _typechecked  # type: ignore[assignment]  # the same call shapes, no instrumentation
    return True


def instrumentation_skipped() -> bool:
    """Whether :func:`skip_typeguard_instrumentation` ran in this process (for tests and diagnostics)."""
    try:
        import typeguard
    except ImportError:
        return False
    return bool(getattr(typeguard.typechecked, _MARK, False))
