"""The Prometheus rules file, its promtool checks, test copies with short ``for:`` and the chart copy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

import yaml

from monitoring.errors import MonitoringError

PACKAGE_DIR: Final = Path(__file__).resolve().parent
RULES_FILE: Final = PACKAGE_DIR / "rules" / "portfolio-os.rules.yaml"
RULE_TESTS_DIR: Final = PACKAGE_DIR / "rules" / "tests"
CHART_FILES: Final = PACKAGE_DIR.parent / "charts" / "portfolio-os" / "files"
CHART_RULES_FILE: Final = CHART_FILES / "prometheus-rules.yaml"
INSTALL_HINT: Final = "install Prometheus' binaries with `apt-get install -y prometheus` (make setup does)"


def find_binary(name: str) -> str:
    """Path of ``prometheus`` or ``promtool``: on PATH, else Debian's /usr/bin.

    Raises:
        MonitoringError: the binary is not installed, naming the install step.
    """
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if found is None:
        raise MonitoringError(f"{name} not found on PATH or in /usr/bin: {INSTALL_HINT}")
    return found


def load_rules(path: Path = RULES_FILE) -> dict[str, Any]:
    """The rules file as a mapping with ``groups``."""
    rules: dict[str, Any] = yaml.safe_load(path.read_text())
    if not isinstance(rules, dict) or not rules.get("groups"):
        raise MonitoringError(f"{path} defines no rule groups")
    return rules


def alert_names(rules: dict[str, Any]) -> list[str]:
    return [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]


def with_short_for(rules: dict[str, Any], duration: str) -> dict[str, Any]:
    """A copy whose alerts all wait ``duration`` (e.g. ``1s``) instead of their ``for:``, for live tests."""
    groups = []
    for group in rules["groups"]:
        rewritten = [({**r, "for": duration} if "alert" in r else dict(r)) for r in group["rules"]]
        groups.append({**group, "rules": rewritten})
    return {**rules, "groups": groups}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool with ``args``; the result carries its exit code and output."""
    return subprocess.run([find_binary("promtool"), *args], capture_output=True, text=True, timeout=120, check=False)


def check_rules(path: Path = RULES_FILE) -> subprocess.CompletedProcess[str]:
    return promtool("check", "rules", str(path))


def run_rule_tests(tests_dir: Path = RULE_TESTS_DIR) -> subprocess.CompletedProcess[str]:
    """``promtool test rules`` on every unit-test file (they name the rules file relative to themselves)."""
    files = sorted(str(p) for p in tests_dir.glob("*.yaml"))
    if not files:
        raise MonitoringError(f"no promtool tests under {tests_dir}")
    return promtool("test", "rules", *files)


def sync_chart(target: Path = CHART_RULES_FILE) -> Path:
    """Copy the rules file verbatim to the chart (its template reads ``groups`` from it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(RULES_FILE, target)
    return target
