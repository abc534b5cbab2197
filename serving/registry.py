"""MLflow registry look-ups: alias to version, version tags, artifacts downloaded to a local folder.

The server talks to the registry only through :class:`Registry`, which turns every MLflow, SQL and
network failure into :class:`~serving.errors.RegistryUnavailable` or
:class:`~serving.errors.ModelNotRegistered`, keeping the cause.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from serving.errors import ModelNotRegistered, RegistryUnavailable

# MLflow answers a missing model with RESOURCE_DOES_NOT_EXIST and a missing alias with
# INVALID_PARAMETER_VALUE ("Registered model alias ... not found").
_NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


@dataclass(frozen=True)
class VersionRef:
    """One registered model version, as an alias resolved to it."""

    name: str
    version: str
    alias: str
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        """The immutable URI of this version (the alias may move; this never does)."""
        return f"models:/{self.name}/{self.version}"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:`` URI, or None for any other kind of URI (or in-memory SQLite)."""
    if not tracking_uri.startswith("sqlite:"):
        return None
    try:
        database = make_url(tracking_uri).database
    except ArgumentError:
        return None
    return Path(database) if database and database != ":memory:" else None


class Registry:
    """Read-only access to one MLflow tracking/registry URI (one per process: it sets MLflow's global URIs)."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client_instance: MlflowClient | None = None

    def _connect(self) -> MlflowClient:
        # Built on first use, after _check_reachable: constructing a client on a SQLite URI
        # creates the folder and an empty registry when they are missing.
        if self._client_instance is None:
            # Process-wide too: resolving a version's logged model (``models:/m-...``) during a
            # download ignores the URIs passed to download_artifacts and falls back to the global
            # default (``sqlite:///mlflow.db`` in the working directory, which MLflow would create).
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
            self._client_instance = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client_instance

    def _check_reachable(self) -> None:
        # MLflow creates a missing SQLite file (an empty registry) and keeps a cached connection
        # to one whose folder vanished; a server must do neither, so a missing file is unreachable.
        path = sqlite_path(self.tracking_uri)
        if path is not None and not path.is_file():
            raise RegistryUnavailable(f"no MLflow registry at {path} (tracking URI {self.tracking_uri})")

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        try:
            yield
        except MlflowException as e:
            if e.error_code in _NOT_FOUND_CODES and "not found" in e.message.lower():
                raise ModelNotRegistered(f"{what}: {e.message}") from e
            raise RegistryUnavailable(f"{what}: {e.message.splitlines()[0] if e.message else e}") from e
        except (SQLAlchemyError, OSError) as e:
            raise RegistryUnavailable(f"{what}: {type(e).__name__}: {e}") from e

    def resolve(self, name: str, alias: str) -> VersionRef:
        """The version ``alias`` points to now, with its tags.

        Raises:
            RegistryUnavailable: the registry cannot be reached or read.
            ModelNotRegistered: no model ``name`` or no alias ``alias`` on it.
        """
        self._check_reachable()
        with self._translated(f"cannot resolve models:/{name}@{alias} at {self.tracking_uri}"):
            mv = self._connect().get_model_version_by_alias(name, alias)
        return VersionRef(name=name, version=str(mv.version), alias=alias, tags=dict(mv.tags or {}))

    def download(self, ref: VersionRef, dst: Path) -> Path:
        """Download the artifacts of ``ref`` into folder ``dst``; return the local model folder.

        Raises:
            RegistryUnavailable: the registry or its artifact store cannot be read.
        """
        self._check_reachable()
        with self._translated(f"cannot download {ref.uri}"):
            self._connect()
            local = download_artifacts(
                artifact_uri=ref.uri,
                dst_path=str(dst),
                tracking_uri=self.tracking_uri,
                registry_uri=self.tracking_uri,
            )
        return Path(local)
