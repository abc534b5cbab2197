"""Package boundaries and dependency groups, checked with the real tools and installed metadata."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# What the gateway image must never carry (docs/deploy.md, "Images": the gateway extra has no torch, Ray, LightGBM,
# MLflow or KServe; README "Architecture" for the package boundaries). Feast's core is allowed:
# the gateway reads the online store in-process; its heavy extras (DuckDB, Spark, ...) are not.
# The gateway opens Feast online-only (feature_repo/online_only.py), so no offline engine is needed.
HEAVY = {"torch", "ray", "lightgbm", "transformers", "mlflow", "evidently", "kserve", "duckdb", "ibis-framework"}


def test_import_contracts_hold() -> None:
    """feature_repo imports no project package; the deployables never import each other; the shared
    names (feature_repo.contract) import no app and no heavy library."""
    result = subprocess.run(
        [Path(sys.executable).parent / "lint-imports", "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


def closure(group: str) -> set[str]:
    """Every distribution the project's ``group`` extra pulls in, from installed metadata."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"][group]]
    todo += [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    while todo:
        req = todo.pop()
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name == "portfolio-os":
            todo += [
                Requirement(r) for extra in req.extras for r in PYPROJECT["project"]["optional-dependencies"][extra]
            ]
            continue
        if name in seen:
            continue
        seen.add(name)
        for raw in metadata.requires(name) or []:
            dep = Requirement(raw)
            if dep.marker is None or any(
                dep.marker.evaluate(default_environment() | {"extra": e}) for e in (req.extras or {""})
            ):
                todo.append(dep)
    return seen


def test_gateway_group_is_free_of_heavy_libraries() -> None:
    pulled = closure("gateway")
    assert {"fastapi", "uvicorn", "httpx", "prometheus-client"} <= pulled
    assert not (pulled & HEAVY), sorted(pulled & HEAVY)


def test_training_group_does_pull_the_heavy_stack() -> None:
    # The same walk finds torch where it belongs, so the gateway check above can fail.
    assert {"torch", "ray", "feast", "lightgbm", "mlflow"} <= closure("training")


def test_torch_is_pinned_to_the_cpu_build() -> None:
    constraints = (ROOT / "requirements" / "constraints.txt").read_text()
    assert re.search(r"^torch==2\.13\.0\+cpu$", constraints, re.M)
    assert "torch==2.13.0" in PYPROJECT["project"]["optional-dependencies"]["training"]


@pytest.mark.slow
def test_feast_cli_sees_the_repo(tmp_path: Path) -> None:
    """`feast plan` over feature_repo/ discovers every object through repo.py and .feastignore."""
    env = os.environ | {"PORTFOLIO_OS_DATA_DIR": str(tmp_path), "FEAST_USAGE": "False"}
    result = subprocess.run(
        [Path(sys.executable).parent / "feast", "-c", str(ROOT / "feature_repo"), "plan"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("technical_features", "fundamental_features", "sentiment_features", "allocator_v1"):
        assert name in result.stdout
