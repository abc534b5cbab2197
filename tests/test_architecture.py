"""Package boundaries and dependency groups, checked with the real tools and installed metadata."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
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
# Small units (docs/CONVENTIONS-style "functions under ~50 lines"): no function of the production
# packages runs past MAX_FUNCTION_LINES lines (def to last line, docstring included) unless it is
# listed here with the reason it reads better long. An entry whose function shrank or went away fails too.
PRODUCTION_PACKAGES = ("feature_repo", "training", "serving", "api", "monitoring", "bench", "portfolio_os", "scripts")
MAX_FUNCTION_LINES = 60
LONG_FUNCTIONS = {
    "api/metrics.py::GatewayMetrics.__post_init__": "one flat list of every series the gateway exports, "
    "in docs/serving-contract.md's order; split by topic, a reader would hunt for a series across methods",
    "feature_repo/transforms/outcomes.py::forward_outcomes": "36 of its lines are the docstring of the "
    "outcome contract (timing, bridging, breaks, columns); the code is 28 lines",
    "bench/gateway.py::parse_args": "a flat list of the benchmark's options, each with the help text "
    "that explains what the run measures",
}


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


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method of a module, by qualified name (``Class.method``, ``outer.inner``)."""
    todo: list[tuple[str, ast.AST]] = [("", tree)]
    while todo:
        prefix, node = todo.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    yield name, child
                todo.append((f"{name}.", child))


def long_functions(root: Path, packages: tuple[str, ...], limit: int) -> dict[str, int]:
    """``path::qualname`` -> lines, for every function over ``limit`` lines under ``packages``."""
    found: dict[str, int] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            for name, node in _functions(ast.parse(path.read_text(), filename=str(path))):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > limit:
                    found[f"{path.relative_to(root).as_posix()}::{name}"] = lines
    return found


def test_long_functions_finds_methods_and_nested_functions(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "class A:\n"
        "    def long(self):\n" + "        x = 1\n" * 4 + "\n"
        "def outer():\n"
        "    def inner():\n" + "        x = 1\n" * 4 + "    return inner\n\n"
        "def short():\n" + "    x = 1\n" * 3
    )
    assert long_functions(tmp_path, ("pkg",), 4) == {
        "pkg/m.py::A.long": 5,
        "pkg/m.py::outer": 7,
        "pkg/m.py::outer.inner": 5,
    }


def test_no_function_runs_past_the_limit_without_a_stated_reason() -> None:
    found = long_functions(ROOT, PRODUCTION_PACKAGES, MAX_FUNCTION_LINES)
    unlisted = {name: lines for name, lines in found.items() if name not in LONG_FUNCTIONS}
    assert not unlisted, (
        f"split these, or list them in LONG_FUNCTIONS with the reason they read better long: {unlisted}"
    )
    stale = sorted(set(LONG_FUNCTIONS) - set(found))
    assert not stale, f"no longer over {MAX_FUNCTION_LINES} lines (or gone): drop from LONG_FUNCTIONS: {stale}"
