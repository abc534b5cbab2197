"""``portfolio-os registry-ui`` (``python -m training.cli_registry_ui``; ``make registry-ui``): browse the registry.

Starts the MLflow UI on the registry the main job writes (``sqlite:///<data>/mlflow.db``, or the
``registry.tracking_uri`` of ``--config``) and prints its address. It listens on 127.0.0.1 only,
with one worker and MLflow's job runner off (it would start seven more processes). Runs, metrics,
model cards and every registered model version with its aliases (champion, challenger) are there.
New experiments created from the UI keep their artifacts beside the database, as the main job's do.
Only light modules are imported: the UI is started by command line, never by importing MLflow here.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from feature_repo.telemetry import set_defaults, telemetry_off

HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 5000
EXIT_ERROR: Final = 2
SERVER_ENV: Final[Mapping[str, str]] = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class RegistryUIError(Exception):
    """The registry cannot be opened here; the message says why and what to do."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portfolio-os registry-ui", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("PORTFOLIO_OS_DATA_DIR", "data")),
        help="the main job's data folder, holding mlflow.db (default: $PORTFOLIO_OS_DATA_DIR or ./data)",
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="a run configuration whose registry.tracking_uri to open"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port on {HOST} (default {DEFAULT_PORT}; 0 is refused)"
    )
    return parser


def tracking_uri(data_dir: Path, config: Path | None) -> str:
    """The registry the main job uses for this data folder and configuration (its own resolution).

    Raises:
        RegistryUIError: the configuration cannot be read or is invalid.
    """
    import yaml

    from training.registry.config import RegistryConfig, lift_legacy_registry

    raw: object = {}
    if config is not None:
        try:
            raw = lift_legacy_registry(yaml.safe_load(config.read_text()) or {})
        except (OSError, yaml.YAMLError, ValueError) as e:
            raise RegistryUIError(f"cannot read run configuration {config}: {e}") from e
    section = raw.get("registry") if isinstance(raw, Mapping) else None
    try:
        registry = RegistryConfig.model_validate(section or {})
    except ValueError as e:
        raise RegistryUIError(f"invalid registry section in {config}: {e}") from e
    return registry.resolve_tracking_uri(data_dir)


def server_command(uri: str, port: int) -> list[str]:
    """``mlflow server`` on ``uri``, bound to 127.0.0.1.

    Raises:
        RegistryUIError: ``uri`` is not a local SQLite registry, or the file is missing (MLflow would
            create an empty one there instead of showing the models).
    """
    if not uri.startswith("sqlite:///"):
        raise RegistryUIError(f"the registry is {uri}: an MLflow server has its own UI; open that address")
    database = Path(uri.removeprefix("sqlite:///"))
    if not database.is_file():
        raise RegistryUIError(
            f"no registry at {database}: run `make demo` (or `portfolio-os demo`) first, or pass --data-dir"
        )
    if not 0 < port < 65536:
        raise RegistryUIError(f"--port must be in 1..65535, not {port}")
    artifacts = (database.parent / "mlartifacts").resolve().as_uri()
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", uri,
        "--default-artifact-root", artifacts,
        "--no-serve-artifacts",
        "--host", HOST,
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Print the UI's address, then become the MLflow server (Ctrl-C stops it)."""
    args = build_parser().parse_args(argv)
    try:
        uri = tracking_uri(args.data_dir.resolve(), args.config)
        command = server_command(uri, args.port)
    except RegistryUIError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    telemetry_off()
    set_defaults(SERVER_ENV)
    print(f"MLflow UI for {uri}\n  open http://{HOST}:{args.port}/  (Ctrl-C stops it)", flush=True)
    os.execv(sys.executable, command)  # the venv's own python running mlflow; no shell
    return 0  # not reached: execv replaces the process


if __name__ == "__main__":
    sys.exit(main())
