"""Helpers shared by the benchmarks: telemetry off, one JSON document out, memory and machine info.

Every benchmark prints exactly one JSON document to stdout (and writes the same document to
``bench/results/<name>.json``); anything a library prints while it runs goes to stderr through
:func:`stdout_to_stderr`. Importing this module turns telemetry off for the process and its
children, so import it before anything that imports Feast (first-party imports sort after
``bench`` in this project, so a plain ``from bench import common`` at the top is enough).

Memory figures are in MiB (2**20 bytes) and named ``*_mb`` for brevity.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from api.__main__ import prepare_process
from training.environment import quiet_third_parties

if TYPE_CHECKING:
    import pandas as pd

# Before anything imports Feast: benchmarks that build the gateway app in process (forecast,
# backtest_job) must get the in-memory metrics the gateway process itself uses.
prepare_process()
quiet_third_parties()

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
RESULTS_DIR: Final = REPO_ROOT / "bench" / "results"
FULL_TICKERS: Final = 2400
FULL_MONTHS: Final = 36
SMALL_TICKERS: Final = 200
SMALL_MONTHS: Final = 12
MIB: Final = 1024 * 1024
# The real ASX end-of-day prices (1997-2014, yearly asx-eod-YYYY.zip files): development data, never
# needed by the test suite; a benchmark on it says so and exits 0 when the folder is absent.
ASX_EOD: Final = Path("/work/shared/data/asx-eod")
_PACKAGES: Final = ("numpy", "pandas", "pyarrow", "duckdb", "feast", "redis", "sqlalchemy")
T = TypeVar("T")


@dataclass(frozen=True)
class UniverseSize:
    """Which synthetic universe a run uses (``generate_universe`` arguments)."""

    n_tickers: int
    n_months: int
    seed: int

    def label(self) -> str:
        """The ``data`` field of every benchmark document: says loudly that the data is synthetic."""
        return (
            "synthetic (randomly generated, no real market data): "
            f"training.ingest.synthetic.generate_universe(n_tickers={self.n_tickers}, "
            f"n_months={self.n_months}, seed={self.seed})"
        )


def synthetic_parser(name: str, description: str) -> argparse.ArgumentParser:
    """The parser of ``python -m bench.<name>``, a benchmark on the synthetic universe, with the
    options every such benchmark takes (:func:`add_common_args`)."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=description)
    add_common_args(parser)
    return parser


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Universe size, ``--small`` and the results folder, shared by every benchmark."""
    parser.add_argument(
        "--n-tickers", type=int, default=None, help=f"tickers in the synthetic universe (default {FULL_TICKERS})"
    )
    parser.add_argument("--n-months", type=int, default=None, help=f"months of sessions (default {FULL_MONTHS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic universe (default 0)")
    parser.add_argument(
        "--small",
        action="store_true",
        help=f"quick smoke run: {SMALL_TICKERS} tickers x {SMALL_MONTHS} months unless given explicitly",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help="where <name>.json is written (default bench/results/)",
    )


def add_asx_eod_arg(parser: argparse.ArgumentParser) -> None:
    """``--data``: the folder of the real ASX end-of-day files (default :data:`ASX_EOD`)."""
    parser.add_argument("--data", type=Path, default=ASX_EOD, help=f"folder of asx-eod-YYYY.zip (default {ASX_EOD})")


def read_asx_eod(folder: Path) -> pd.DataFrame:
    """The price rows the ingest stage stores from the yearly zips under ``folder`` (raw closes, halts
    keep their close), read with the project's importer; its prints go to stderr."""
    from training.ingest.eod_files import load_eod_files

    with stdout_to_stderr():
        return load_eod_files(sorted(folder.glob("asx-eod-*.zip"))).prices


def skipped(name: str, reason: str) -> int:
    """Say on stdout, as the one JSON document, that benchmark ``name`` did not run and why; exit status 0."""
    print(json.dumps({"benchmark": name, "skipped": reason}))
    return 0


def universe_size(args: argparse.Namespace) -> UniverseSize:
    """Resolve ``--n-tickers``/``--n-months`` against ``--small``; explicit values win."""
    tickers = args.n_tickers or (SMALL_TICKERS if args.small else FULL_TICKERS)
    months = args.n_months or (SMALL_MONTHS if args.small else FULL_MONTHS)
    return UniverseSize(n_tickers=tickers, n_months=months, seed=args.seed)


def peak_rss_mb() -> float:
    """High-water mark of this process's resident memory (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Resident memory of this process now (from ``/proc/self/statm``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / MIB


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    """A temporary folder for a run's inputs and stores, removed with everything in it afterwards."""
    with tempfile.TemporaryDirectory(prefix="portfolio-os-bench-") as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send whatever a library prints (Feast's "Materializing ..." lines) to stderr."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds`` (monotonic, high resolution)."""

    seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def median_seconds(work: Callable[[], T], repeats: int, *, warm_up: bool = False) -> tuple[float, T]:
    """The median wall time of ``repeats`` calls of ``work`` (at least one) and the last call's result.

    With ``warm_up``, one untimed call first (caches, lazy compilation).
    """
    if warm_up:
        work()
    times: list[float] = []
    for _ in range(max(repeats, 1)):
        began = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - began)
    return statistics.median(times), result


def alternating_rounds(names: Sequence[str], repeats: int) -> Iterator[tuple[int, str]]:
    """``(round, name)`` for ``repeats`` rounds (at least one) of every name, the order reversed
    every other round: this machine's CPU speed shifts for seconds at a time, so who goes first
    alternates."""
    for r in range(max(repeats, 1)):
        for name in names if r % 2 == 0 else names[::-1]:
            yield r, name


def spawn_child(name: str, child: str, round_index: int, *args: str) -> dict[str, Any]:
    """Run ``python -m bench.<name> --child <child> *args`` in a fresh interpreter; return the JSON
    line it prints last (at least ``seconds`` and ``peak_rss_mb``).

    A benchmark that compares implementations runs each once per round in its own process, so each
    has its own peak memory and no caches warmed by the other.
    """
    log(f"round {round_index}: {child} in a child process")
    command = [sys.executable, "-m", f"bench.{name}", "--child", child, *args]
    done = subprocess.run(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    log(f"round {round_index}: {child} {result['seconds']:.2f} s, peak {result['peak_rss_mb']} MiB")
    return result


def wait_http_ok(url: str, process: subprocess.Popen[bytes], what: str, timeout_s: float) -> None:
    """Poll ``url`` every 0.2 s until it answers 200; fail if ``process`` (the server, ``what``) exits first
    or ``timeout_s`` passes.

    Raises:
        RuntimeError: the server exited or was not ready in time.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} was not ready within {timeout_s:.0f} s")


def child_rounds(
    name: str, children: Sequence[str], repeats: int, child_args: Callable[[int, str], Sequence[str]]
) -> dict[str, list[dict[str, Any]]]:
    """Every child's figures, one per round: ``repeats`` :func:`alternating_rounds`, each child run in
    its own interpreter (:func:`spawn_child`) with ``child_args(round, child)``."""
    runs: dict[str, list[dict[str, Any]]] = {child: [] for child in children}
    for r, child in alternating_rounds(children, repeats):
        runs[child].append(spawn_child(name, child, r, *child_args(r, child)))
    return runs


def rounded(value: float, digits: int = 4) -> float | None:
    """``value`` to ``digits`` significant digits for readable JSON; None when not finite."""
    return float(f"{value:.{digits}g}") if math.isfinite(value) else None


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator`` rounded, or None when the denominator is zero."""
    return rounded(numerator / denominator) if denominator else None


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (nested in dicts and lists) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def environment() -> dict[str, Any]:
    """What the figures were measured on: machine, Python, library versions, code revision."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_total_mb": round(_mem_total_mb()),
        "packages": {name: _version(name) for name in _PACKAGES},
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def document(name: str, description: str, size: UniverseSize, **fields: Any) -> dict[str, Any]:
    """The common head of every benchmark document, followed by the benchmark's own fields."""
    return {
        "benchmark": name,
        "description": description,
        "data": size.label(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **fields,
        "environment": environment(),
    }


def emit(name: str, doc: dict[str, Any], results_dir: Path, *, total_seconds: float | None = None) -> Path:
    """Print ``doc`` as the one JSON document on stdout and write it to ``results_dir/<name>.json``;
    with ``total_seconds`` (the whole run's wall time), that last, rounded."""
    if total_seconds is not None:
        doc = {**doc, "total_seconds": rounded(total_seconds)}
    text = json.dumps(finite(doc), indent=2, default=str, allow_nan=False)
    results_dir.mkdir(parents=True, exist_ok=True)
    target = results_dir / f"{name}.json"
    target.write_text(text + "\n")
    print(text, flush=True)
    print(f"[bench] wrote {target}", file=sys.stderr)
    return target


def log(message: str) -> None:
    """Progress for the person watching: stderr only, stdout stays one JSON document."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _mem_total_mb() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()
