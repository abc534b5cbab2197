"""The data-quality view: per-ticker anomaly flags of the sentinel, and the names that cross packages.

The sentinel (``python -m monitoring sentinel``) scores daily per-ticker statistics with an
IsolationForest and writes one row per (ticker, session) into the ``data_quality`` feature view;
the gateway reads that view online to flag tickers in ``/v1/signals``, and the briefing names the
statistics behind each anomaly. The statistics, the view's columns, the ticker classes the metric
is labelled by, and the rule that picks an anomaly's reasons are defined here once, on the ground
floor both packages may import. Nothing here needs scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from feature_repo.schema import FeatureSpec

DATA_QUALITY_VIEW: Final = "data_quality"

# The daily per-ticker statistics the sentinel scores, in model column order.
SENTINEL_STATISTICS: Final[tuple[FeatureSpec, ...]] = (
    FeatureSpec("return_z", "float64", "Daily return over the previous session's 21-session daily volatility."),
    FeatureSpec(
        "range_z",
        "float64",
        "Z-score of the session's (high - low) / open against the ticker's previous 21 sessions.",
    ),
    FeatureSpec("volume_z", "float64", "Z-score of log(1 + volume) against the trailing 21 sessions."),
    FeatureSpec("missing_share", "float64", "Share of the technical view's features missing on the row."),
    FeatureSpec(
        "staleness",
        "float64",
        "Sessions since the close last changed (a zero return is no change, a session without a bar counts); "
        "on a bar that changed it, the sessions without a bar just before it.",
    ),
)
STATISTIC_NAMES: Final[tuple[str, ...]] = tuple(s.name for s in SENTINEL_STATISTICS)
DEVIATION_PREFIX: Final = "dev_"

DATA_QUALITY_FEATURES: Final[tuple[FeatureSpec, ...]] = (
    FeatureSpec("anomaly", "int64", "1 when the sentinel flagged the ticker's row of the session, else 0."),
    FeatureSpec(
        "anomaly_score",
        "float64",
        "IsolationForest anomaly score (the negated score_samples: higher is more anomalous).",
    ),
    *(
        FeatureSpec(
            f"{DEVIATION_PREFIX}{s.name}",
            "float64",
            f"Standardised deviation of {s.name} from the reference window: (value - median) / (1.4826 MAD).",
        )
        for s in SENTINEL_STATISTICS
    ),
)

# Liquidity terciles by median traded value over the reference window: the label of
# ``portfolio_os_data_anomalies`` (a few fixed values, never a ticker: bounded cardinality).
TICKER_CLASSES: Final[tuple[str, ...]] = ("liquid", "mid", "illiquid", "unknown")

# What the gateway says about a ticker's row: its snapshot date was scored and flagged, scored and
# not flagged, or not scored by the sentinel (no row, or a row of another date).
DATA_QUALITY_STATUSES: Final[tuple[str, ...]] = ("ok", "anomaly", "unchecked")

# An anomaly names its largest deviations, at most this many, and only those at least this large
# (the largest always, so every anomaly has a reason).
MAX_REASONS: Final = 2
MIN_REASON_DEVIATION: Final = 2.0


@dataclass(frozen=True)
class Reason:
    """One statistic behind an anomaly and its standardised deviation."""

    statistic: str
    deviation: float

    def text(self) -> str:
        """``return_z +6.2`` (the deviation to one decimal, signed)."""
        return f"{self.statistic} {self.deviation:+.1f}"


def reasons(deviations: Mapping[str, float | None]) -> list[Reason]:
    """The statistics that drove an anomaly: the largest absolute deviations, largest first.

    Args:
        deviations: statistic name (from :data:`STATISTIC_NAMES`) -> standardised deviation; missing
            or non-finite values are left out.
    """
    finite = [(n, float(v)) for n in STATISTIC_NAMES if (v := deviations.get(n)) is not None and math.isfinite(v)]
    ranked = sorted(finite, key=lambda item: (-abs(item[1]), STATISTIC_NAMES.index(item[0])))
    return [Reason(n, v) for i, (n, v) in enumerate(ranked[:MAX_REASONS]) if i == 0 or abs(v) >= MIN_REASON_DEVIATION]


def status(anomaly: float | None, row_date: str | None, snapshot_date: str | None) -> str:
    """``anomaly``/``ok`` when the sentinel scored the snapshot's date, else ``unchecked``.

    Dates are ISO ``YYYY-MM-DD`` strings (the session of the view row and of the signal's features).
    """
    if anomaly is None or row_date is None or snapshot_date is None or row_date != snapshot_date:
        return "unchecked"
    return "anomaly" if anomaly >= 1 else "ok"
