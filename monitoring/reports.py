"""Where monitoring writes its reports, and atomic JSON writes the exporter can read at any time.

Layout under ``<data>/reports/``:

* ``drift/<UTC stamp>/<view>.html`` and ``<view>.evidently.json``: Evidently's own report of a run;
  ``<view>.summary.json``: the run's :class:`~monitoring.drift.ViewDrift`.
* ``drift/latest/<view>.json``: the newest summary per view, what the exporter serves.
* ``decay/latest.json``: the newest alpha-decay summary, one entry per model.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

DRIFT: str = "drift"
DECAY: str = "decay"
LATEST: str = "latest"


def stamp(when: datetime) -> str:
    """A sortable, filesystem-safe UTC stamp such as ``20260102T030405Z``."""
    return when.strftime("%Y%m%dT%H%M%SZ")


def drift_run_dir(reports_dir: Path, when: datetime) -> Path:
    """The folder of one drift run's reports (created)."""
    path = reports_dir / DRIFT / stamp(when)
    path.mkdir(parents=True, exist_ok=True)
    return path


def latest_drift_file(reports_dir: Path, view: str) -> Path:
    return reports_dir / DRIFT / LATEST / f"{view}.json"


def latest_decay_file(reports_dir: Path) -> Path:
    return reports_dir / DECAY / f"{LATEST}.json"


def write_json(path: Path, payload: Any) -> Path:
    """Write JSON beside ``path`` then rename: a scrape never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    partial.replace(path)
    return path


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def latest_drift_summaries(reports_dir: Path) -> list[dict[str, Any]]:
    """Every view's newest drift summary (empty when no run has happened yet)."""
    folder = reports_dir / DRIFT / LATEST
    if not folder.is_dir():
        return []
    return [read_json(p) for p in sorted(folder.glob("*.json"))]
