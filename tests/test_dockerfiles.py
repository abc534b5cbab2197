"""Lint of docker/*.Dockerfile and .dockerignore (no Docker needed): pinned, non-root, no secrets, lean."""

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
IMAGES: Final = {"gateway": "gateway", "model-server": "serving", "training": "training"}
BASE: Final = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")
SECRET_NAME: Final = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|PEPPER|CREDENTIAL|DATABASE_URL|REDIS_URL)", re.IGNORECASE)
OPTIONAL: Final = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
EXTRAS: Final = set(OPTIONAL)
TORCH_CPU_INDEX: Final = "https://download.pytorch.org/whl/cpu"


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
def test_base_images_are_pinned_and_multi_stage(name: str) -> None:
    """Every FROM is python:3.11.<patch>-slim-bookworm (or an earlier stage); at least two stages."""
    instructions = dockerfile(name)
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    names: set[str] = set()
    for ins in froms:
        image, *rest = ins.args.split()
        assert image in names or BASE.match(image), f"unpinned or unexpected base {image}"
        if len(rest) == 2 and rest[0].upper() == "AS":
            names.add(rest[1])
    assert not any(i.keyword == "ARG" and "latest" in i.args for i in instructions)


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
def test_pip_installs_are_lean_and_constrained(name: str) -> None:
    """Every pip install has --no-cache-dir; the project install uses the constraints file."""
    installs = [i for i in dockerfile(name) if i.keyword == "RUN" and "pip install" in i.args]
    assert installs
    for ins in installs:
        for command in ins.args.split("&&"):
            if "pip install" in command:
                assert "--no-cache-dir" in command, command
    project = [i for i in installs if re.search(r"\"\.\[[a-z,]+\]\"", i.args)]
    assert len(project) == 1 and "-c requirements/constraints.txt" in project[0].args


@pytest.mark.parametrize("name", IMAGES)
def test_runtime_environment(name: str) -> None:
    """PYTHONDONTWRITEBYTECODE and every telemetry-off variable of training.environment are set."""
    final = stages(dockerfile(name))[-1]
    env: dict[str, str] = {}
    for ins in final:
        if ins.keyword == "ENV":
            env.update(env_pairs(ins))
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    for key, value in TELEMETRY_OFF.items():
        assert env.get(key) == value, f"{key} should be {value}"


@pytest.mark.parametrize("name", IMAGES)
def test_healthcheck_or_documented_reason(name: str) -> None:
    """A HEALTHCHECK, or HEALTHCHECK NONE with a comment saying why."""
    checks = [i for i in stages(dockerfile(name))[-1] if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    if checks[0].args.upper() == "NONE":
        assert len(checks[0].comment.split()) >= 5, "say why there is no health check"
    else:
        assert "CMD" in checks[0].args


@pytest.mark.parametrize(("name", "extra"), IMAGES.items())
def test_extras_per_image(name: str, extra: str) -> None:
    """Each image installs its own extra; the gateway image only `gateway` (no torch, Ray or KServe)."""
    args = " ".join(i.args for i in dockerfile(name) if i.keyword == "RUN")
    (extras,) = re.findall(r"\"\.\[([a-z,]+)\]\"", args)
    chosen = set(extras.split(","))
    assert chosen <= EXTRAS and extra in chosen
    if name == "gateway":
        assert chosen == {"gateway"}
        assert not re.search(r"\b(torch|ray|lightgbm|kserve|mlflow|transformers)\b", args)
    assert "all" not in chosen and "dev" not in chosen


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


@pytest.mark.parametrize("name", IMAGES)
def test_torch_comes_from_the_cpu_index(name: str) -> None:
    """An image whose extras pull torch installs it from the PyTorch CPU index (the constraints pin +cpu)."""
    instructions = dockerfile(name)
    args = " ".join(i.args for i in instructions if i.keyword == "RUN")
    (extras,) = re.findall(r"\"\.\[([a-z,]+)\]\"", args)
    if "torch" not in extra_requirements(set(extras.split(","))):
        return
    assert any(i.keyword == "ARG" and i.args == f"TORCH_INDEX_URL={TORCH_CPU_INDEX}" for i in instructions)
    (install,) = [c for c in args.split("&&") if re.search(r"\"\.\[[a-z,]+\]\"", c)]
    assert '--extra-index-url "${TORCH_INDEX_URL}"' in install and "--index-url" not in install.replace("--extra-", "")


def test_model_server_image_runs_the_text_model() -> None:
    """The `serving` extra (the model-server image) carries torch and transformers for sentiment_text."""
    assert {"torch", "transformers", "kserve", "mlflow"} <= extra_requirements({"serving"})
    assert "torch" not in extra_requirements({"gateway"})


def test_dockerignore_keeps_the_context_clean() -> None:
    """.dockerignore leaves out the venvs, git, data, registries and env files."""
    patterns = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and line[0] != "#"
    }
    assert {".git", ".venv", "data", "mlruns", ".env"} <= patterns
    assert "README.md" not in patterns and "requirements" not in patterns  # pyproject needs both


def test_lint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """The parser sees what it must: an unpinned base, a root user and a remote ADD."""
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nADD https://example.com/x /x\nRUN pip install \\\n  x\nUSER root\n")
    instructions = parse(bad)
    assert [i.keyword for i in instructions] == ["FROM", "ADD", "RUN", "USER"]
    assert not BASE.match(instructions[0].args)
    assert instructions[2].args == "pip install x"
    assert not re.fullmatch(r"\d+(:\d+)?", instructions[3].args)
