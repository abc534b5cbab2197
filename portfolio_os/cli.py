"""``portfolio-os COMMAND [ARGS...]``: one command for every Portfolio OS entry point.

Each command runs its app's ``python -m`` entry point in this process (:func:`runpy.run_module`,
as ``python -m`` itself does) with the rest of the command line, so both spellings behave the same
and the chart, the images and the tests keep their ``python -m`` forms. This module names those
entry points and imports none of them: ``training``, ``serving``, ``api`` and ``monitoring`` never
import each other (the import contracts), and this dispatcher sits beside them rather than inside
one, so no app starts another app's code. ``portfolio-os --help`` answers without loading any app.
"""

from __future__ import annotations

import runpy
import sys
from dataclasses import dataclass
from typing import Final

PROG: Final = "portfolio-os"
EXIT_USAGE: Final = 2


@dataclass(frozen=True)
class Command:
    """One subcommand: the module ``python -m`` would run, and what it does."""

    module: str
    summary: str
    keep_name: bool = False  # the training CLI reads the stage name itself (``python -m training train``)


# The main job's commands: ``demo``, ``run`` and one per pipeline stage (training.pipeline.STAGES, in
# order; tests/test_portfolio_os_cli.py holds the two lists equal).
STAGES: Final[tuple[str, ...]] = (
    "ingest",
    "health",
    "sentiment",
    "features",
    "apply",
    "materialize",
    "online",
    "train",
    "allocate",
    "guard",
)
PIPELINE: Final[dict[str, str]] = {
    "demo": "every stage in order",
    "run": "the stages named by --stages a,b,...",
    **dict.fromkeys(STAGES, "one stage"),
}

APPS: Final[dict[str, Command]] = {
    "serve": Command("serving.launcher", "the model servers and the gateway on 127.0.0.1, supervised (make serve)"),
    "gateway": Command("api", "the B2B gateway alone, under uvicorn"),
    "model-server": Command("serving", "one KServe model server: NAME is a registered model (technical, ...)"),
    "monitor": Command("monitoring", "the monitoring jobs: drift, decay, retrain, sentinel, rules, ..."),
    "keys": Command("api.keys", "create, list and revoke the gateway's API keys"),
    "registry-ui": Command("training.cli_registry_ui", "the MLflow UI on the local registry, on 127.0.0.1"),
}

COMMANDS: Final[dict[str, Command]] = {
    **{name: Command("training", summary, keep_name=True) for name, summary in PIPELINE.items()},
    **APPS,
}


def usage() -> str:
    """The help text: every command, what it does and the ``python -m`` module it runs."""
    rows = [
        ("demo", PIPELINE["demo"], "training"),
        ("run", PIPELINE["run"], "training"),
        ("STAGE", "one stage: " + ", ".join(STAGES), "training"),
        *((name + (" NAME" if name == "model-server" else ""), c.summary, c.module) for name, c in APPS.items()),
    ]
    width = max(len(name) for name, _, _ in rows)
    lines = [f"usage: {PROG} COMMAND [ARGS...]", ""]
    lines += [f"  {name:<{width}}  {summary}  [python -m {module}]" for name, summary, module in rows]
    lines += ["", f"{PROG} COMMAND --help shows the command's own options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the command named by ``argv[0]`` with the rest of ``argv`` (default: the process's arguments).

    Returns:
        The dispatcher's own exit status (0 for ``--help``, 2 for a missing or unknown command). A
        command that exits raises :class:`SystemExit` with its own status, exactly as under ``python -m``.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in {"-h", "--help"}:
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else EXIT_USAGE
    name, rest = args[0], args[1:]
    command = COMMANDS.get(name)
    if command is None:
        print(f"{PROG}: unknown command {name!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_USAGE
    # The module reads its arguments from sys.argv, as under `python -m` (kserve parses them at import).
    sys.argv = [f"{PROG} {name}", *([name] if command.keep_name else []), *rest]
    runpy.run_module(command.module, run_name="__main__", alter_sys=True)
    return 0


def cli() -> None:
    """Console-script entry point (``portfolio-os``)."""
    sys.exit(main())
