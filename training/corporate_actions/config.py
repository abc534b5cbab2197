"""The ``corporate_actions`` section of a run configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Policy = Literal["mask", "adjust", "fail"]


class DetectionSettings(BaseModel):
    """What counts as a suspected unadjusted corporate action."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_jump: float = Field(
        default=1.8,
        gt=1.0,
        description="A close-to-close move of at least this factor up or down (x1.8 or x1/1.8 = -44%) is "
        "a candidate. A 2-for-1 split on a day that also fell 8% is x0.46; lower this to catch 3-for-2 splits.",
    )
    max_ratio: int = Field(
        default=20,
        ge=2,
        le=100,
        description="Proposed ratios are 1:2 .. 1:max_ratio (consolidations) and 2:1 .. max_ratio:1 (splits).",
    )
    ratio_tolerance: float = Field(
        default=0.10,
        gt=0.0,
        lt=0.5,
        description="|log(move / ratio)| within which a move matches a ratio. The day's own move blurs a real "
        "1:10 consolidation to x9.5 or x10.6; further away the move is proposed as a capital return "
        "(a drop) or a consolidation at the measured ratio (a rise).",
    )
    min_price: float = Field(
        default=0.01,
        ge=0.0,
        description="A jump between two closes both below this is tick noise, not a corporate action: "
        "sub-cent ASX shares trade in 0.001 steps, so 0.001 -> 0.002 is one tick and x2.",
    )
    confirm_bars: int = Field(
        default=5,
        ge=1,
        description="Bars after the jump that must stay on its new side (and bars before on the old side) "
        "of the geometric midpoint: a move undone within them is a bad tick, not a corporate action.",
    )


class CorporateActionsConfig(BaseModel):
    """Corporate actions the user confirms, and what to do with jumps nobody confirmed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: Path | None = Field(
        None,
        description="CSV of confirmed actions (ticker, ex_date, kind, ratio, amount); applied to raw closes. "
        "Only for sources whose adj_close is raw (per-day vendor files, price files without adj_close).",
    )
    policy: Policy = Field(
        "mask",
        description="For detected jumps not in the file: 'mask' writes a series break at the jump (no return, "
        "feature window or label spans it; the rows stay), 'adjust' applies the proposed action, 'fail' stops "
        "the run (exit 3). Every suspect is listed in <data>/reports/corporate_actions_suspected.csv.",
    )
    detection: DetectionSettings = Field(default_factory=DetectionSettings)
