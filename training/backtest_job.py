"""The backtest job: ``python -m training.backtest_job run --job-id ID`` (on Ray) and ``... catalogue``.

``run`` reads the job's spec from the gateway database, runs it as a Ray task (a local Ray on
127.0.0.1, or the cluster's when ``RAY_ADDRESS`` is set, as under a Ray job submission), and
writes progress, the result and the HTML tear sheet back. Every write is conditional on the row
still being ``running``: when the gateway cancels (or gives up on) a job, the job's next progress
write finds that out and it stops without overwriting the final state.

``catalogue`` publishes what the offline store holds (first and last session, tickers, label) for
the gateway, which refuses a backtest outside it with a 422 naming the bound.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, delete, insert, select, update

from feature_repo.backtests import (
    FAILED,
    RUNNING,
    SUCCEEDED,
    BacktestSpec,
    backtest_catalogue,
    backtest_jobs,
    backtest_metadata,
    encode_report,
)
from training.backtest_data import read_catalogue
from training.errors import TrainingError

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
EXIT_FAILED: Final = 2
EXIT_GONE: Final = 3


class JobStopped(Exception):
    """The job's row is no longer running (cancelled, or failed by the gateway): stop quietly."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class JobRecord:
    """The job's row, written only while it is ``running`` (module docstring)."""

    def __init__(self, engine: Engine, job_id: str, clock: Clock = utc_now) -> None:
        self.engine, self.job_id, self.clock = engine, job_id, clock

    def load(self) -> tuple[str, BacktestSpec]:
        """The tenant and the spec of a running job.

        Raises:
            JobStopped: no such job, or it is not running (cancelled before it started).
        """
        with self.engine.connect() as conn:
            row = conn.execute(
                select(backtest_jobs.c.tenant, backtest_jobs.c.state, backtest_jobs.c.spec).where(
                    backtest_jobs.c.id == self.job_id
                )
            ).first()
        if row is None or row.state != RUNNING:
            raise JobStopped(f"job {self.job_id} is {'unknown' if row is None else row.state}, not running")
        return str(row.tenant), BacktestSpec.model_validate(row.spec)

    def _write(self, **values: Any) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(
                update(backtest_jobs)
                .where(backtest_jobs.c.id == self.job_id, backtest_jobs.c.state == RUNNING)
                .values(updated_at=self.clock(), **values)
            )
        return done.rowcount == 1

    def progress(self, fraction: float, message: str) -> None:
        """Record progress in [0, 1]; raises :class:`JobStopped` once the row is no longer running."""
        if not self._write(progress=min(max(fraction, 0.0), 1.0), message=message):
            raise JobStopped(f"job {self.job_id} was stopped")

    def succeed(self, result: dict[str, Any], report: str) -> bool:
        """Record the result and the HTML tear sheet (stored compressed: :func:`encode_report`)."""
        now = self.clock()
        stored = encode_report(report)
        return self._write(state=SUCCEEDED, progress=1.0, message="done", result=result, report=stored, finished_at=now)

    def fail(self, reason: str) -> bool:
        return self._write(state=FAILED, error=reason, message="failed", finished_at=self.clock())


def publish_catalogue(engine: Engine, data_dir: Path, clock: Clock = utc_now) -> dict[str, Any]:
    """Write the offline store's range, tickers and label as the catalogue row (id 1); return it."""
    backtest_metadata.create_all(engine, tables=[backtest_catalogue])
    catalogue = read_catalogue(data_dir)
    row = {
        "id": 1,
        "first_session": catalogue.first_session,
        "last_session": catalogue.last_session,
        "tickers": list(catalogue.tickers),
        "label": catalogue.label,
        "updated_at": clock(),
    }
    with engine.begin() as conn:
        conn.execute(delete(backtest_catalogue).where(backtest_catalogue.c.id == 1))
        conn.execute(insert(backtest_catalogue).values(**row))
    return row


def execute(job_id: str, database_url: str, data_dir: str, clock: Clock = utc_now) -> str:
    """Run one job to a final state; returns the state written (or ``stopped``)."""
    from training.backtest_execute import run_job  # the numeric stack, imported where the job runs

    engine = create_engine(database_url)
    record = JobRecord(engine, job_id, clock)
    try:
        tenant, spec = record.load()
        result, report = run_job(
            job_id, tenant, spec, record=record, data_dir=Path(data_dir), storage=database_url, clock=clock
        )
        return SUCCEEDED if record.succeed(result, report) else "stopped"
    except JobStopped as e:
        log.info("%s", e)
        return "stopped"
    except (TrainingError, ValueError) as e:
        record.fail(str(e))
        return FAILED
    except Exception as e:  # the row must not stay running: the reason goes to the client, the trace to the log
        log.exception("backtest job %s crashed", job_id)
        record.fail(f"internal error in the backtest job: {type(e).__name__}: {e}")
        return FAILED
    finally:
        engine.dispose()


def execute_on_ray(job_id: str, database_url: str, data_dir: str, num_cpus: int | None) -> str:
    """:func:`execute` as a Ray task (local Ray on 127.0.0.1, or the cluster's under ``RAY_ADDRESS``)."""
    from training.ray_runtime import ray_session

    with ray_session(num_cpus=num_cpus) as session:
        import ray

        log.info("job %s runs on Ray (%s, %d CPUs)", job_id, session.address, session.cpus)

        task = ray.remote(num_cpus=1, max_retries=0)(execute)
        state: str = ray.get(task.remote(job_id, database_url, data_dir))
        return state


def _database_url(args: argparse.Namespace, data_dir: Path) -> str:
    return args.database_url or os.environ.get("PORTFOLIO_OS_DATABASE_URL") or f"sqlite:///{data_dir / 'gateway.db'}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.backtest_job", description=__doc__.split("\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir", type=Path, default=None, help="data folder (default: $PORTFOLIO_OS_DATA_DIR or ./data)"
    )
    common.add_argument(
        "--database-url",
        default=None,
        help="gateway DB (default: $PORTFOLIO_OS_DATABASE_URL or sqlite under the data folder)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[common], help="run one queued job on Ray")
    run.add_argument("--job-id", required=True, help="the job's id (gateway_backtest_jobs.id)")
    run.add_argument("--no-ray", action="store_true", help="run in this process (tests, debugging)")
    run.add_argument("--num-cpus", type=int, default=1, help="CPUs of a local Ray (default: %(default)s)")
    sub.add_parser("catalogue", parents=[common], help="publish the offline store's sessions and tickers")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the command; exit 0 on success or a stop, 2 on a failed job."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    data_dir = (args.data_dir or Path(os.environ.get("PORTFOLIO_OS_DATA_DIR", "data"))).resolve()
    url = _database_url(args, data_dir)
    if args.command == "catalogue":
        engine = create_engine(url)
        try:
            row = publish_catalogue(engine, data_dir)
        except TrainingError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            engine.dispose()
        print(
            f"catalogue: {row['first_session']}..{row['last_session']}, {len(row['tickers'])} tickers, {row['label']}"
        )
        return 0
    if args.no_ray:
        state = execute(args.job_id, url, str(data_dir))
    else:
        state = execute_on_ray(args.job_id, url, str(data_dir), args.num_cpus)
    log.info("job %s: %s", args.job_id, state)
    return EXIT_FAILED if state == FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
