"""The ``data_quality`` flag of ``/v1/signals``: the sentinel's per-ticker anomaly rows, read online.

The monitoring sentinel materialises the ``data_quality`` view (see :mod:`feature_repo.data_quality`);
the gateway reads only its ``anomaly`` column and the row's event time, so it needs neither
scikit-learn nor the sentinel's code. A row changes once a day, so each is kept for
``cache_seconds``. A ticker is ``anomaly`` or ``ok`` only when the row's session is the session of
the ticker's signal (its features' ``as_of``); otherwise it is ``unchecked``. When the store cannot
answer (the view not registered yet, the store down) every ticker is ``unchecked``: a missing
sentinel never fails a signals request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from api.cache import Cache
from api.errors import FeatureStoreUnavailableError
from api.features import OnlineFeatures
from api.metrics import GatewayMetrics
from feature_repo.data_quality import DATA_QUALITY_VIEW, status
from feature_repo.tables import TICKER

ANOMALY_REF: Final = f"{DATA_QUALITY_VIEW}:anomaly"
log = logging.getLogger(__name__)
# Tickers whose flags are kept: the online universe.
MAX_CACHED_FLAGS: Final = 20_000


@dataclass(frozen=True)
class Flag:
    """A ticker's newest sentinel row: its anomaly value and session (``None``: no row)."""

    anomaly: float | None
    session: str | None


class DataQualityFlags:
    """Cached reads of the ``data_quality`` view's anomaly flags.

    Args:
        features: the gateway's online-store window (its lock serialises store access).
        cache_seconds: how long a ticker's row is reused.
        clock: monotonic seconds; tests inject theirs.
        metrics: the gateway's metrics (the cache's series).
    """

    def __init__(
        self,
        features: OnlineFeatures,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.features = features
        self.rows: Cache[str, Flag] = Cache(
            "data_quality", metrics or GatewayMetrics(), ttl=cache_seconds, max_entries=MAX_CACHED_FLAGS, clock=clock
        )

    def cached(self, tickers: list[str]) -> dict[str, Flag] | None:
        """Every ticker's flag from fresh cached rows, or ``None`` when any must be read (non-blocking)."""
        return self.rows.peek_many(tickers)

    def read(self, tickers: list[str]) -> dict[str, Flag]:
        """Every ticker's flag: cached rows plus one online read for the rest (blocking; never raises)."""
        return self.rows.get_many(tickers, self._load)

    def _load(self, tickers: list[str]) -> dict[str, Flag]:
        try:
            data = self.features.read_refs([ANOMALY_REF], [{TICKER: t} for t in tickers])
        except FeatureStoreUnavailableError as e:
            # Kept like a row (unchecked) for cache_seconds: a registry without the view (the sentinel
            # never applied) must not cost every request a failing store call.
            log.warning("data_quality flags unreadable, tickers answered unchecked: %s", e)
            return {t: Flag(None, None) for t in tickers}
        return {t: _flag(data, i) for i, t in enumerate(tickers)}


def _flag(data: dict[str, list[Any]], index: int) -> Flag:
    seconds = data["anomaly__ts"][index]
    value = data["anomaly"][index]
    session = datetime.fromtimestamp(seconds, UTC).date().isoformat() if seconds else None
    return Flag(float(value) if value is not None else None, session)


def flag_signals(answer: dict[str, Any], flags: dict[str, Flag]) -> dict[str, Any]:
    """``answer`` (``SignalsPublic`` JSON) with each signal's ``data_quality`` set (new signal dicts).

    The signal dicts may be shared with a cached composition or the scored snapshot: they are copied,
    never changed in place.
    """
    signals = []
    for signal in answer["signals"]:
        flag = flags.get(signal["ticker"])
        as_of = signal.get("as_of")
        snapshot_session = as_of[:10] if isinstance(as_of, str) else None
        quality = status(flag.anomaly, flag.session, snapshot_session) if flag else "unchecked"
        signals.append({**signal, "data_quality": quality})
    return {**answer, "signals": signals}
