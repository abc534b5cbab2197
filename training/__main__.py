"""Command line of the main job: ``python -m training`` (installed as ``portfolio-os``).

portfolio-os demo                     # every stage on configs/demo.yaml (the bundled real data)
portfolio-os run --stages ingest,health
portfolio-os features --config configs/demo.yaml
portfolio-os materialize --mode incremental
"""

# ruff: noqa: E402 - the imports below load Feast, so typeguard is told to skip its instrumentation first

from __future__ import annotations

from feature_repo.import_costs import skip_typeguard_instrumentation

skip_typeguard_instrumentation()  # seconds of Feast's import per process (feature_repo.import_costs)

import argparse
import sys
import warnings
from pathlib import Path

from feature_repo.settings import FeatureStoreSettings
from feature_repo.store import release_offline_engine
from training.config import PipelineConfig, load_config
from training.context import RunContext
from training.environment import quiet_third_parties
from training.errors import HealthCheckFailed, TrainingError
from training.pipeline import STAGE_HELP, STAGES, run_pipeline
from training.sentiment.config import SentimentRunConfig

DEFAULT_CONFIG = Path("configs/demo.yaml")
EXIT_ERROR = 2
EXIT_HEALTH = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portfolio-os",
        description="Portfolio OS main job: " + " -> ".join(STAGES) + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Stages:\n" + "\n".join(f"  {n:<12} {h}" for n, h in STAGE_HELP.items()),
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="run configuration YAML (default: %(default)s)"
    )
    common.add_argument(
        "--data-dir", type=Path, default=None, help="data folder (default: $PORTFOLIO_OS_DATA_DIR or ./data)"
    )
    common.add_argument("--no-progress", action="store_true", help="no progress bars (for logs and CI)")
    common.add_argument(
        "--smoke-test",
        action="store_true",
        help="sentiment, train and allocate stages: CI-sized runs (one trial, a few steps) to prove the wiring, "
        "not to find a model",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("demo", parents=[common], help="run every stage in order")
    run = sub.add_parser("run", parents=[common], help="run the named stages in order")
    run.add_argument("--stages", required=True, help=f"comma-separated, from: {','.join(STAGES)}")
    for name, text in STAGE_HELP.items():
        stage = sub.add_parser(name, parents=[common], help=text)
        if name == "materialize":
            stage.add_argument(
                "--mode",
                choices=["full", "incremental"],
                default=None,
                help="override the configuration's materialisation mode",
            )
        if name == "sentiment":
            stage.add_argument(
                "--corpus",
                type=Path,
                action="append",
                default=None,
                metavar="FILE",
                help="fine-tune on this labelled file instead of the configured corpus: 'sentence,label' CSV or "
                "Financial PhraseBank 'sentence@label' .txt (repeat for several files)",
            )
    return parser


def _context(args: argparse.Namespace) -> RunContext:
    config: PipelineConfig = load_config(args.config)
    if getattr(args, "mode", None):
        config = config.model_copy(update={"materialize": args.mode})
    if args.smoke_test and config.signals is not None:
        tuning = config.signals.tuning.model_copy(update={"smoke_test": True})
        config = config.model_copy(update={"signals": config.signals.model_copy(update={"tuning": tuning})})
    if getattr(args, "corpus", None):
        section = config.sentiment or SentimentRunConfig()
        config = config.model_copy(update={"sentiment": section.model_copy(update={"corpus": args.corpus})})
    if args.smoke_test and config.sentiment is not None:
        config = config.model_copy(update={"sentiment": config.sentiment.model_copy(update={"smoke_test": True})})
    if args.smoke_test and config.allocation is not None:
        rl = config.allocation.rl.model_copy(update={"smoke_test": True})
        config = config.model_copy(update={"allocation": config.allocation.model_copy(update={"rl": rl})})
    overrides = {"data_dir": str(args.data_dir.resolve())} if args.data_dir else {}
    settings = FeatureStoreSettings(**overrides)  # type: ignore[arg-type]
    return RunContext(config=config, settings=settings, out=sys.stdout, progress=not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the stages, map failures to exit codes with a one-line reason."""
    quiet_third_parties()
    # ibis (inside Feast's DuckDB offline store) calls a DuckDB API its own release deprecates.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ibis\..*")
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        stages = list(STAGES)
    elif args.command == "run":
        stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    else:
        stages = [args.command]
    try:
        run_pipeline(_context(args), stages)
    except HealthCheckFailed as e:
        print(f"\nhealth checks failed:\n{e}", file=sys.stderr)
        return EXIT_HEALTH
    except (TrainingError, ValueError) as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        release_offline_engine()
    return 0


def cli() -> None:
    """Console-script entry point (``portfolio-os``)."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
