"""What ingest does with corporate actions: apply the confirmed ones, then mask, apply or refuse the rest.

Order matters: the user's actions are applied first and detection runs on the result, so a confirmed
action is never reported as a suspect. Everything is recomputed from the raw rows of the run, so the
same inputs give the same ``adj_close``, factors and breaks (a re-run writes nothing new), and a newly
confirmed action changes only its own ticker's earlier ``adj_close``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from feature_repo.tables import DATE, SERIES_BREAK_COLUMNS, TICKER
from training.corporate_actions.actions import FRAME_COLUMNS, load_actions
from training.corporate_actions.config import CorporateActionsConfig
from training.corporate_actions.detect import SUSPECT_COLUMNS, detect_suspects
from training.corporate_actions.factors import action_factors, apply_factors
from training.errors import HealthCheckFailed

__all__ = [
    "BREAK_REASON",
    "REPORT_NAME",
    "CorporateActionsOutcome",
    "masked_suspects_note",
    "process_prices",
    "write_report",
]

BREAK_REASON: Final = "corporate_action_suspect"
REPORT_NAME: Final = "corporate_actions_suspected.csv"
SHOWN: Final = 10


@dataclass(frozen=True)
class CorporateActionsOutcome:
    """The prices with ``adj_close`` adjusted, and the derived rows to store.

    Attributes:
        prices: the input rows, raw columns unchanged, ``adj_close`` times each bar's factor.
        factors: :data:`~feature_repo.tables.ADJUSTMENT_FACTOR_COLUMNS` rows (confirmed actions, plus
            the suspects under ``adjust``).
        breaks: series-break rows for the suspects under ``mask`` (empty otherwise).
        suspects: every detected suspect in :data:`~training.corporate_actions.detect.SUSPECT_COLUMNS`.
        policy: the policy that was applied.
        unmatched: confirmed actions that adjust no bar (a ticker not loaded, or an ex-date before its
            first bar): usually a typo in the file, so the summary says how many.
    """

    prices: pd.DataFrame
    factors: pd.DataFrame
    breaks: pd.DataFrame
    suspects: pd.DataFrame
    policy: str
    unmatched: int = 0

    @property
    def confirmed(self) -> int:
        return int((self.factors["origin"] == "file").sum())

    def summary(self) -> str:
        applied = {"mask": f"{len(self.breaks)} series break(s)", "adjust": "applied", "fail": "refused"}
        unmatched = f" ({self.unmatched} matched no bar)" if self.unmatched else ""
        return (
            f"{self.confirmed} confirmed action(s) applied{unmatched}, {len(self.suspects)} suspected "
            f"(policy {self.policy}: {applied[self.policy]})"
        )

    def raise_if_refused(self, report: Path) -> None:
        """Under ``fail``, any suspect stops the run (exit 3) before anything is written."""
        if self.policy != "fail" or self.suspects.empty:
            return
        shown = "\n  ".join(_describe(row) for row in self.suspects.head(SHOWN).itertuples(index=False))
        raise HealthCheckFailed(
            f"{len(self.suspects)} suspected unadjusted corporate action(s) (corporate_actions.policy: fail); "
            f"confirm them in corporate_actions.file or choose policy mask/adjust. All listed in {report}:\n  {shown}"
        )


def process_prices(
    prices: pd.DataFrame, config: CorporateActionsConfig, known_breaks: pd.DataFrame | None = None
) -> CorporateActionsOutcome:
    """Apply the configured actions file, detect what remains, and apply the policy to it.

    Args:
        prices: raw rows in the price contract; ``adj_close`` is the source's (``close`` for raw sources).
        config: the ``corporate_actions`` section.
        known_breaks: series breaks from elsewhere (reused codes): no jump is measured across them.
    """
    actions = load_actions(config.file) if config.file is not None else pd.DataFrame(columns=list(FRAME_COLUMNS))
    actions = actions.assign(origin="file")
    factors = action_factors(prices, actions)
    adjusted = apply_factors(prices, factors)
    suspects = detect_suspects(adjusted, config.detection, known_breaks)
    breaks = _empty_breaks()
    if config.policy == "adjust" and not suspects.empty:
        together = [frame for frame in (actions, suspects_as_actions(suspects)) if not frame.empty]
        factors = action_factors(prices, pd.concat(together, ignore_index=True))
        adjusted = apply_factors(prices, factors)
    elif config.policy == "mask":
        breaks = pd.DataFrame(
            {
                TICKER: suspects["ticker"].to_numpy(),
                DATE: pd.to_datetime(suspects["ex_date"]).to_numpy(dtype="datetime64[ns]"),
                "reason": BREAK_REASON,
                "detail": [_describe(row) for row in suspects.itertuples(index=False)],
            },
            columns=list(SERIES_BREAK_COLUMNS),
        )
    unmatched = len(actions) - int((factors["origin"] == "file").sum())
    return CorporateActionsOutcome(adjusted, factors, breaks, suspects, config.policy, unmatched)


def suspects_as_actions(suspects: pd.DataFrame) -> pd.DataFrame:
    """The suspects' proposals as actions (origin "suspect") for :func:`action_factors`."""
    return pd.DataFrame(
        {
            TICKER: suspects["ticker"].to_numpy(),
            DATE: pd.to_datetime(suspects["ex_date"]).to_numpy(dtype="datetime64[ns]"),
            "kind": suspects["kind"].to_numpy(),
            "ratio": suspects["ratio"].to_numpy(dtype=np.float64),
            "amount": suspects["amount"].to_numpy(dtype=np.float64),
            "file": "detected",
            "line": 0,
            "origin": "suspect",
        }
    )


def write_report(suspects: pd.DataFrame, path: Path) -> None:
    """Write the suspects CSV (header only when there are none, so an old report never lingers).

    Ten significant digits: a proposed ratio or amount read back reproduces the factor to 1e-9.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    suspects.loc[:, list(SUSPECT_COLUMNS)].to_csv(path, index=False, float_format="%.10g")


def _describe(row: Any) -> str:
    """One suspect (a row of ``itertuples``) in words, for break details and error messages."""
    what = f"ratio {row.ratio:.6g}" if pd.notna(row.ratio) else f"amount {row.amount:.6g}"
    return (
        f"{row.ticker} {row.ex_date}: {row.kind} {what} proposed (match {row.match}; "
        f"close {row.close_before:g} -> {row.close_after:g}, x{row.day_ratio:.4g}; "
        f"median {row.median_before:g} -> {row.median_after:g} over {row.bars_after} bar(s) after)"
    )


def _empty_breaks() -> pd.DataFrame:
    return pd.DataFrame(
        {TICKER: pd.Series(dtype=object), DATE: pd.Series(dtype="datetime64[ns]"), "reason": [], "detail": []},
        columns=list(SERIES_BREAK_COLUMNS),
    ).astype({"reason": object, "detail": object})


def masked_suspects_note(breaks: pd.DataFrame, data_dir: Path, shown: int = 5) -> str | None:
    """The health report's lines on suspects masked by series breaks (policy ``mask``); None if none."""
    masked = breaks[breaks["reason"] == BREAK_REASON]
    if masked.empty:
        return None
    lines = [
        f"corporate-action suspects masked: {len(masked):,} (series breaks; returns across them are not checked; "
        f"all in {data_dir / 'reports' / REPORT_NAME})"
    ]
    lines += [f"  {detail}" for detail in masked["detail"].head(shown)]
    if len(masked) > shown:
        lines.append(f"  ... and {len(masked) - shown:,} more")
    return "\n".join(lines)
