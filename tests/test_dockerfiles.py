"""Lint of docker/*.Dockerfile and .dockerignore (no Docker needed): pinned, non-root, no secrets, lean, cached."""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from training.environment import TELEMETRY_OFF

ROOT: Final = Path(__file__).resolve().parents[1]
DOCKER: Final = ROOT / "docker"
# Each image's dependency layers, in order: every image but the gateway extends the same chain,
# so their first layers are shared in the build cache.
IMAGES: Final = {
    "gateway": ["online", "gateway"],
    "model-server": ["serving"],
    "text-model-server": ["serving", "serving-text"],
    "training": ["serving", "serving-text", "training", "monitoring"],
}
BASE: Final = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")
SECRET_NAME: Final = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|PEPPER|CREDENTIAL|DATABASE_URL|REDIS_URL)", re.IGNORECASE)
OPTIONAL: Final = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
EXTRAS: Final = set(OPTIONAL)
TORCH_CPU_INDEX: Final = "https://download.pytorch.org/whl/cpu"
DEPS_INSTALL: Final = re.compile(r"pip install .*-c /src/constraints\.txt -r /reqs/(?P<extra>[a-z-]+)\.txt")
SOURCES: Final = {"feature_repo", "api", "training", "serving", "monitoring"}


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: keyword, arguments (continuations joined), the comment above it."""

    keyword: str
    args: str
    comment: str


def parse(path: Path) -> list[Instruction]:
    """The instructions of a Dockerfile, with line continuations joined and comments kept."""
    instructions: list[Instruction] = []
    comment: list[str] = []
    buffer = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            comment = [*comment, line.lstrip("# ")] if line else []
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        buffer += " " + line.removesuffix("\\").strip()
        if line.endswith("\\"):
            continue
        keyword, _, args = buffer.strip().partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), " ".join(comment)))
        buffer, comment = "", []
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Instructions grouped by build stage (each starts with FROM)."""
    groups: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            groups.append([])
        if groups:
            groups[-1].append(ins)
    return groups


def env_pairs(ins: Instruction) -> dict[str, str]:
    """The variables an ENV instruction sets (key=value form)."""
    return dict(token.split("=", 1) for token in shlex.split(ins.args) if "=" in token)


def dockerfile(name: str) -> list[Instruction]:
    """The parsed docker/<name>.Dockerfile (fails when missing)."""
    path = DOCKER / f"{name}.Dockerfile"
    assert path.is_file(), f"{path} is missing"
    return parse(path)


@pytest.mark.parametrize("name", IMAGES)
def test_base_image_is_an_argument_with_a_pinned_default(name: str) -> None:
    """ARG BASE_IMAGE=python:3.11.<patch>-slim-bookworm comes first; every FROM is it or an earlier stage."""
    instructions = dockerfile(name)
    first = instructions[0]
    assert first.keyword == "ARG" and first.args.startswith("BASE_IMAGE="), "ARG BASE_IMAGE=... must come first"
    assert BASE.match(first.args.split("=", 1)[1]), f"unpinned default base {first.args}"
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    names: set[str] = set()
    for stage in stages(instructions):
        ins = stage[0]
        image, *rest = ins.args.split()
        # FROM scratch only to flatten an earlier stage's whole filesystem (the gateway's slimmed system).
        flattens = len(stage) > 1 and stage[1].keyword == "COPY" and re.fullmatch(r"--from=(\S+) / /", stage[1].args)
        if image == "scratch":
            assert flattens and flattens[1] in names, "FROM scratch must start by copying an earlier stage's /"
        else:
            assert image in names or image == "${BASE_IMAGE}", f"unexpected base {image}"
        if len(rest) == 2 and rest[0].upper() == "AS":
            names.add(rest[1])
    assert not any(i.keyword == "ARG" and "latest" in i.args for i in instructions)


def dependency_layers(instructions: list[Instruction]) -> list[str]:
    """The extras whose requirements each dependency RUN installs, in order."""
    return [m["extra"] for i in instructions if i.keyword == "RUN" for m in DEPS_INSTALL.finditer(i.args)]


@pytest.mark.parametrize("name", IMAGES)
def test_pip_installs_are_lean_and_constrained(name: str) -> None:
    """Every pip install has --no-cache-dir; dependencies install from the constraints before any source."""
    instructions = dockerfile(name)
    installs = [i for i in instructions if i.keyword == "RUN" and "pip install" in i.args]
    assert installs
    for ins in installs:
        for command in ins.args.split("&&"):
            if "pip install" in command:
                assert "--no-cache-dir" in command, command
    constraints = "requirements/constraints.txt /src/constraints.txt"
    assert any(i.keyword == "COPY" and i.args == constraints for i in instructions)
    last_deps = max(n for n, i in enumerate(instructions) if DEPS_INSTALL.search(i.args))
    copied = [n for n, i in enumerate(instructions) if i.keyword == "COPY" and i.args.split()[0] in SOURCES]
    assert copied and min(copied) > last_deps, "sources are copied before the dependency layers (cache)"


@pytest.mark.parametrize("name", IMAGES)
def test_project_is_the_last_layers_of_the_final_stage(name: str) -> None:
    """The packages are copied into the venv after it: a code-only change rebuilds only those layers."""
    final = stages(dockerfile(name))[-1]
    venv_at = next(
        n for n, i in enumerate(final) if i.keyword == "COPY" and i.args == "--from=venv /opt/venv /opt/venv"
    )
    packages = {
        i.args.split()[0]: (n, i.args.split()[1])
        for n, i in enumerate(final)
        if i.keyword == "COPY" and i.args.split()[0] in SOURCES and "site-packages" in i.args
    }
    assert packages and set(packages) <= SOURCES and "feature_repo" in packages
    for package, (at, target) in packages.items():
        assert at > venv_at and target == f"/opt/venv/lib/python3.11/site-packages/{package}"
    assert not [i for i in final[venv_at:] if i.keyword == "RUN"], "no RUN after the venv copy (cache)"


@pytest.mark.parametrize("name", IMAGES)
def test_index_settings_stay_out_of_the_final_image(name: str) -> None:
    """PIP_* arrive as ARGs of the build stages only: no ARG/ENV PIP_* or pip config in the final stage."""
    *builders, final = stages(dockerfile(name))
    declared = {i.args.split("=", 1)[0] for stage in builders for i in stage if i.keyword == "ARG"}
    assert {"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_TRUSTED_HOST"} <= declared
    for ins in final:
        assert ins.keyword != "ARG", f"ARG in the final stage: {ins.args}"
        if ins.keyword == "ENV":
            assert not [k for k in env_pairs(ins) if k.startswith("PIP_")], ins.args
    for ins in (i for stage in [*builders, final] for i in stage):
        assert "pip.conf" not in ins.args and "pip config" not in ins.args, "never write a pip config"


@pytest.mark.parametrize("name", IMAGES)
def test_runtime_environment(name: str) -> None:
    """Telemetry off, no bytecode writes, and the venv's python is the only Python on the PATH."""
    final = stages(dockerfile(name))[-1]
    env: dict[str, str] = {}
    for ins in final:
        if ins.keyword == "ENV":
            env.update(env_pairs(ins))
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    for key, value in TELEMETRY_OFF.items():
        assert env.get(key) == value, f"{key} should be {value}"
    # The chart's commands say `python`: on either base that must be the venv's (Debian has no `python`).
    assert env.get("PATH", "").startswith("/opt/venv/bin:")
    assert not [i for i in final if i.keyword == "RUN" and "python" in i.args], "runtime RUNs use no Python"


@pytest.mark.parametrize("name", IMAGES)
def test_extras_per_image(name: str) -> None:
    """Each image installs its own extras, in layers shared with the images built on the same chain."""
    layers = dependency_layers(dockerfile(name))
    assert layers == IMAGES[name]
    assert set(layers) <= EXTRAS and not {"all", "dev"} & set(layers)
    if name != "gateway":
        assert layers == IMAGES["training"][: len(layers)], "not a prefix of the shared chain"


def test_shared_dependency_stage_is_identical() -> None:
    """The images on the shared chain declare the same deps stage up to their first install (one cache)."""

    def prelude(name: str) -> list[tuple[str, str]]:
        deps = next(s for s in stages(dockerfile(name)) if s[0].args.endswith("AS deps"))
        first = next(n for n, i in enumerate(deps) if DEPS_INSTALL.search(i.args))
        return [(i.keyword, i.args) for i in deps[: first + 1]]

    assert prelude("model-server") == prelude("text-model-server") == prelude("training")


@pytest.mark.parametrize("name", IMAGES)
def test_runs_as_a_numeric_non_root_user(name: str) -> None:
    """The final stage's last USER is a numeric UID (and GID) other than 0."""
    final = stages(dockerfile(name))[-1]
    users = [i.args for i in final if i.keyword == "USER"]
    assert users, "the final stage sets no USER"
    match = re.fullmatch(r"(\d+)(:(\d+))?", users[-1])
    assert match, f"USER {users[-1]} is not numeric"
    assert int(match.group(1)) != 0 and (match.group(3) is None or int(match.group(3)) != 0)
    user_at = max(n for n, i in enumerate(final) if i.keyword == "USER")
    assert not [i for i in final[user_at:] if i.keyword == "RUN"], "RUN after USER would run as the app user"


@pytest.mark.parametrize("name", IMAGES)
def test_no_remote_add_and_no_secrets(name: str) -> None:
    """No ADD of URLs (COPY only), no secret-looking ENV/ARG, no credentials in URLs."""
    for ins in dockerfile(name):
        assert ins.keyword != "ADD", f"use COPY, not ADD: {ins.args}"
        if ins.keyword in {"ENV", "ARG"}:
            names = list(env_pairs(ins)) if ins.keyword == "ENV" else [ins.args.split("=", 1)[0]]
            assert not [n for n in names if SECRET_NAME.search(n)], f"{ins.keyword} {ins.args}"
        assert not re.search(r"://[^/\s:]+:[^@\s]+@", ins.args), f"credentials in a URL: {ins.args}"
        assert "--mount=type=secret" not in ins.args or ins.keyword == "RUN"


@pytest.mark.parametrize("name", IMAGES)
def test_healthcheck_or_documented_reason(name: str) -> None:
    """A HEALTHCHECK, or HEALTHCHECK NONE with a comment saying why."""
    checks = [i for i in stages(dockerfile(name))[-1] if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    if checks[0].args.upper() == "NONE":
        assert len(checks[0].comment.split()) >= 5, "say why there is no health check"
    else:
        assert "CMD" in checks[0].args


def extra_requirements(extras: set[str]) -> set[str]:
    """The project names the extras list, following ``portfolio-os[...]`` self-references."""
    names: set[str] = set()
    todo = list(extras)
    while todo:
        for requirement in OPTIONAL[todo.pop()]:
            name, _, rest = requirement.partition("[")
            if name == "portfolio-os":
                todo += rest.rstrip("]").split(",")
            else:
                names.add(re.split(r"[=<>!~;\s]", name, maxsplit=1)[0].lower())
    return names


def test_dockerignore_keeps_the_context_clean() -> None:
    """.dockerignore leaves out the venvs, git, data, registries and env files."""
    patterns = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and line[0] != "#"
    }
    assert {".git", ".venv", "data", "mlruns", ".env"} <= patterns
    assert "README.md" not in patterns and "requirements" not in patterns  # pyproject needs both


@pytest.mark.parametrize("name", IMAGES)
def test_torch_comes_from_the_cpu_index(name: str) -> None:
    """An image whose extras pull torch has the PyTorch CPU index as its default extra index."""
    instructions = dockerfile(name)
    if "torch" not in extra_requirements(set(IMAGES[name])):
        return
    assert any(i.keyword == "ARG" and i.args == f"PIP_EXTRA_INDEX_URL={TORCH_CPU_INDEX}" for i in instructions)
    assert not [i for i in instructions if "--index-url" in i.args], "index URLs come from build arguments"


def test_gateway_requirements_are_lean() -> None:
    """The gateway extra brings no torch, Ray, LightGBM, MLflow, KServe or transformers."""
    assert not {"torch", "ray", "lightgbm", "mlflow", "kserve", "transformers"} & extra_requirements({"gateway"})


def test_only_the_text_model_server_and_training_carry_torch() -> None:
    """`serving` (model-server) has no torch, no Feast and only MLflow's client (mlflow-skinny); `serving-text`
    adds torch, transformers and ONNX Runtime; the full mlflow (server, UI) is the jobs image's."""
    assert {"kserve", "mlflow-skinny", "lightgbm"} <= extra_requirements({"serving"})
    assert not {"torch", "transformers", "onnxruntime", "mlflow", "feast"} & extra_requirements({"serving"})
    assert {"torch", "transformers", "onnxruntime", "kserve", "mlflow-skinny"} <= extra_requirements({"serving-text"})
    assert "mlflow" in extra_requirements({"training"})


def test_lint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """The parser sees what it must: an unpinned base, a root user and a remote ADD."""
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nADD https://example.com/x /x\nRUN pip install \\\n  x\nUSER root\n")
    instructions = parse(bad)
    assert [i.keyword for i in instructions] == ["FROM", "ADD", "RUN", "USER"]
    assert not BASE.match(instructions[0].args)
    assert instructions[2].args == "pip install x"
    assert not re.fullmatch(r"\d+(:\d+)?", instructions[3].args)
