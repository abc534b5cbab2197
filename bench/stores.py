"""Feast stores over the synthetic universe, shared by ``bench.materialize`` and ``bench.online``.

Builds the three feature views from a SYNTHETIC universe exactly as the pipeline's features
stage does (technical from prices and the benchmark, fundamental from the quarterly reports,
sentiment from ``scored_documents`` with the ASX close at 06:00 UTC), writes the Feast source
files, and opens the two online-store configurations under comparison:

* ``sqlite``: the embedded default, ``FeatureStoreSettings(data_dir=...)`` (file registry);
* ``redis``: the production configuration, ``environment="production"``, a real redis-server on
  127.0.0.1 (``tests.servers.redis_server``) and the SQL registry on a SQLite URL.

Everything lives under the caller's temporary folder; the Redis server is stopped on exit.
Each measured store starts empty (a new folder, a flushed Redis database), because Redis skips
rows not newer than what it holds and would otherwise make a second write look cheaper.
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import pandas as pd
import redis

from bench import common
from feature_repo.files import write_feature_file
from feature_repo.settings import FeatureStoreSettings
from feature_repo.store import FeatureRepo, full_window
from feature_repo.tables import DATE, TICKER

BACKENDS: Final = ("sqlite", "redis")  # baseline first
# The ASX closes at 16:00 Sydney (configs/synthetic-scale.yaml): 06:00 UTC.
ASX_SESSION_CLOSE_UTC: Final = pd.Timedelta(hours=6)


@dataclass(frozen=True)
class Views:
    """Transform output per view (``ticker``, ``date``, features) and how long each took."""

    frames: dict[str, pd.DataFrame]
    compute_seconds: dict[str, float]

    def window(self, view: str) -> tuple[datetime, datetime]:
        """A materialisation window covering every row of ``view``."""
        return full_window(self.frames[view][DATE])

    def tickers(self) -> list[str]:
        return sorted(self.frames["technical_features"][TICKER].unique())


def compute_views(size: common.UniverseSize) -> Views:
    """Generate the universe and run the three transforms on it."""
    from feature_repo.transforms.fundamental import fundamental_features
    from feature_repo.transforms.sentiment import sentiment_features
    from feature_repo.transforms.technical import technical_features
    from training.ingest.synthetic import generate_universe, scored_documents

    common.log(f"generating {size} and computing the three views")
    u = generate_universe(n_tickers=size.n_tickers, n_months=size.n_months, seed=size.seed)
    jobs: dict[str, Callable[[], pd.DataFrame]] = {
        "technical_features": lambda: technical_features(u.prices, u.benchmark.set_index(DATE)["close"]),
        "fundamental_features": lambda: fundamental_features(u.prices, u.fundamentals),
        "sentiment_features": lambda: sentiment_features(
            u.prices, scored_documents(u.documents, seed=size.seed), session_close_utc=ASX_SESSION_CLOSE_UTC
        ),
    }
    frames: dict[str, pd.DataFrame] = {}
    seconds: dict[str, float] = {}
    for view, job in jobs.items():
        with common.Stopwatch() as sw:
            frames[view] = job()
        seconds[view] = sw.seconds
    return Views(frames=frames, compute_seconds=seconds)


def write_sources(views: Views, data_dir: Path) -> None:
    """Write every view's Feast source file under ``data_dir/features``."""
    for view, frame in views.frames.items():
        write_feature_file(data_dir, view, frame)


def sqlite_settings(folder: Path) -> FeatureStoreSettings:
    """The embedded default: file registry and SQLite online store under ``folder``."""
    return FeatureStoreSettings(data_dir=str(folder))


def redis_settings(folder: Path, redis_url: str) -> FeatureStoreSettings:
    """The production configuration: Redis online store, SQL registry (on a SQLite URL here)."""
    return FeatureStoreSettings(
        environment="production",
        data_dir=str(folder),
        redis_url=redis_url,
        registry_url=f"sqlite:///{folder / 'registry.db'}",
    )


@contextmanager
def redis_running(folder: Path) -> Iterator[str]:
    """A real redis-server on a free 127.0.0.1 port (``tests.servers``); yields its redis:// URL."""
    # Imported by name so that type-checking bench does not type-check tests/ as well.
    servers = importlib.import_module("tests.servers")
    folder.mkdir(parents=True)
    with servers.redis_server(folder) as url:
        common.log(f"redis-server listening at {url}")
        yield url


def fresh_settings(
    backend: str, folder: Path, redis_url: str, *, sources: Path | None = None, db: int = 0
) -> FeatureStoreSettings:
    """Settings of an empty store of ``backend`` in the new folder ``folder``.

    Args:
        backend: ``sqlite`` or ``redis``.
        folder: created here; holds the SQLite files or the SQL registry.
        redis_url: the running server; its database ``db`` is emptied first.
        sources: a data folder whose ``features/`` (the Feast source files) is linked into ``folder``.
        db: the Redis database number.
    """
    folder.mkdir(parents=True)
    if sources is not None:
        shutil.copytree(sources / "features", folder / "features", copy_function=os.link)
    if backend == "sqlite":
        return sqlite_settings(folder)
    url = f"{redis_url.rsplit('/', 1)[0]}/{db}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return redis_settings(folder, url)


def backend_order(round_index: int) -> tuple[str, ...]:
    """Baseline first in even rounds, Redis first in odd ones, so neither always goes first."""
    return BACKENDS if round_index % 2 == 0 else BACKENDS[::-1]


def open_applied(settings: FeatureStoreSettings) -> tuple[FeatureRepo, float]:
    """Open the store and register the entity, views and services; returns the apply seconds."""
    with common.stdout_to_stderr():
        repo = FeatureRepo.open(settings)
        with common.Stopwatch() as sw:
            repo.apply()
    return repo, sw.seconds


def materialize_view(repo: FeatureRepo, views: Views, view: str) -> float:
    """Materialise one view over its full window; returns the seconds it took."""
    start, end = views.window(view)
    with common.stdout_to_stderr(), common.Stopwatch() as sw:
        repo.materialize(start, end, [view])
    return sw.seconds


def warm_up(repo: FeatureRepo, views: Views) -> None:
    """Materialise every view over its full window into ``repo``, a throwaway store (untimed).

    On this VM the first large materialisation after other work runs up to 2x slower (lazy
    set-up, memory touched for the first time); without a warm-up that cost would land on
    whichever backend happens to be measured first.
    """
    for view in views.frames:
        materialize_view(repo, views, view)


def online_rows_found(repo: FeatureRepo, view: str, tickers: list[str]) -> int:
    """How many of ``tickers`` have a row of ``view`` online (checks what materialisation wrote)."""
    feature = repo.definitions.views[view].features[0].name
    rows = [{TICKER: t} for t in tickers]
    with common.stdout_to_stderr():
        response = repo.store.get_online_features(features=[f"{view}:{feature}"], entity_rows=rows)
    stamps: list[int] = response.to_dict(include_event_timestamps=True)[f"{feature}__ts"]
    return sum(1 for seconds in stamps if seconds > 0)
