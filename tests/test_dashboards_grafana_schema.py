"""Every dashboard the chart ships validates against Grafana's own JSON Schemas.

The schemas are upstream material (grafana-foundation-sdk, Apache-2.0) that the project must not
copy: they are read from ``../shared/schemas/grafana/`` beside the checkout, or from the folder
``PORTFOLIO_OS_GRAFANA_SCHEMAS`` names. Where neither exists the tests skip and say so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from monitoring import dashboards

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = Path(os.environ.get("PORTFOLIO_OS_GRAFANA_SCHEMAS", ROOT.parent / "shared" / "schemas" / "grafana"))
CHART_BOARDS = sorted(dashboards.CHART_DASHBOARDS_DIR.glob("*.json"))

pytestmark = pytest.mark.skipif(
    not (SCHEMAS / "dashboard.jsonschema.json").is_file(),
    reason=f"Grafana's JSON Schemas are not at {SCHEMAS} (set PORTFOLIO_OS_GRAFANA_SCHEMAS to their folder)",
)


def _validator(schema_file: str, definition: str | None) -> Draft7Validator:
    schema: dict[str, Any] = json.loads((SCHEMAS / schema_file).read_text())
    if definition is not None:
        schema = {**schema, "$ref": f"#/definitions/{definition}"}
    return Draft7Validator(schema)


def _errors(validator: Draft7Validator, instance: object, where: str) -> list[str]:
    return [f"{where}/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


def _panel_errors(board: dict[str, Any]) -> list[str]:
    target = _validator("prometheus.jsonschema.json", None)
    found: list[str] = []
    for panel in board["panels"]:
        where = f"panel {panel['id']} ({panel['type']})"
        kind_file = f"{panel['type']}.jsonschema.json"
        assert (SCHEMAS / kind_file).is_file(), f"{where}: no Grafana schema for panel type {panel['type']}"
        found += _errors(_validator(kind_file, "Options"), panel.get("options", {}), f"{where} options")
        if "FieldConfig" in json.loads((SCHEMAS / kind_file).read_text())["definitions"]:
            custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
            found += _errors(_validator(kind_file, "FieldConfig"), custom, f"{where} fieldConfig.custom")
        for t in panel.get("targets", []):
            found += _errors(target, t, f"{where} target {t.get('refId')}")
    return found


def test_the_chart_ships_dashboards():
    assert CHART_BOARDS, f"no dashboards under {dashboards.CHART_DASHBOARDS_DIR}"


@pytest.mark.parametrize("path", CHART_BOARDS, ids=lambda p: p.name)
def test_dashboard_validates_against_grafanas_schema(path: Path):
    board = json.loads(path.read_text())
    errors = _errors(_validator("dashboard.jsonschema.json", "Dashboard"), board, path.name)
    errors += _panel_errors(board)
    assert not errors, "\n".join(errors)


def test_the_check_catches_a_broken_panel():
    """A panel missing options Grafana requires, or with an unknown key, is reported."""
    board = json.loads(CHART_BOARDS[0].read_text())
    panel = board["panels"][0]
    panel["options"] = {k: v for k, v in panel["options"].items() if k != "legend"} | {"legendd": True}
    errors = _panel_errors(board)
    assert any("'legend' is a required property" in e for e in errors)
    assert any("legendd" in e for e in errors)
    board["schemaVersion"] = "39"
    assert _errors(_validator("dashboard.jsonschema.json", "Dashboard"), board, "x")
