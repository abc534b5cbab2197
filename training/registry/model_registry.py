"""The MLflow side of training: log runs, register versions, gate promotion, roll back.

Tracking belongs to the pipeline, not the model: :mod:`training.models` never imports mlflow;
this module does. A version is registered with everything serving relies on (the ordered feature
list as the signature's inputs, the ``feature_service``/``horizon``/``snapshot_hash``/
``code_version`` tags of ``docs/serving-contract.md``, its model card as the description), aliased
``challenger``, and moved to ``champion`` only by :meth:`ModelRegistry.promote_if_better`. If any
step after the version's creation fails, the version is deleted again: nothing half-registered.
Every registration, promotion, refusal and rollback goes to the append-only audit log.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import lightgbm as lgb
import pandas as pd

from training.audit import AuditLog
from training.errors import TrainingError
from training.registry.config import RegistryConfig

EXPERIMENT: Final = "portfolio-os-signals"
ARTIFACT: Final = "model"
PIP_REQUIREMENTS: Final = ["lightgbm==4.7.0", "numpy", "pandas"]
_TRAINING: Final = Path(__file__).resolve().parents[1]  # the training package
BLEND_CODE: Final = _TRAINING / "models" / "blend.py"
ENSEMBLE_CODE: Final = _TRAINING / "signals" / "ensemble_pyfunc.py"
# The allocator's pyfunc and the numpy-only modules it runs (observation, policy, weights).
ALLOCATOR_CODE: Final = _TRAINING / "allocation" / "allocator_pyfunc.py"
ALLOCATOR_CODE_PATHS: Final = tuple(_TRAINING / "allocation" / f for f in ("observation.py", "policy.py", "weights.py"))
# The text model's pyfunc and the batching module it runs.
SENTIMENT_TEXT_CODE: Final = _TRAINING / "sentiment" / "text_pyfunc.py"
SENTIMENT_TEXT_CODE_PATHS: Final = (_TRAINING / "sentiment" / "text_classifier.py",)
SENTIMENT_TEXT_REQUIREMENTS: Final = [
    "torch==2.13.0",
    "transformers==5.23.0",
    "onnxruntime==1.30.0",
    "numpy",
    "pandas",
]


class RegistryUnreachable(TrainingError):
    """The MLflow tracking server or database cannot be reached."""


@dataclass(frozen=True)
class RunRecord:
    """What one run logs besides the model: the registered name, params, metrics, tags, card, tables."""

    name: str
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]
    card: str
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)


@dataclass(frozen=True)
class PromotionDecision:
    """What the promotion gate decided, and why."""

    model: str
    version: str
    promoted: bool
    reason: str
    champion_before: str | None
    challenger_score: float
    champion_score: float | None

    def describe(self) -> str:
        """One line for a job log: ``name vN: champion (reason)`` or ``... challenger only (...)``."""
        verdict = "champion" if self.promoted else "challenger only"
        return f"{self.model} v{self.version}: {verdict} ({self.reason})"


@dataclass(frozen=True, eq=False)
class PyfuncSpec:
    """How one pyfunc family is logged: its code file and the modules it runs, config, artifacts, schema.

    Columns are ``(type, name, required)``; the code file is logged as models-from-code, so a model
    server runs the file that was registered, whatever the training package looks like later.
    """

    code: Path
    code_paths: tuple[Path, ...]
    model_config: dict[str, Any]
    inputs: tuple[tuple[str, str, bool], ...]
    outputs: tuple[tuple[str, str, bool], ...]
    input_example: pd.DataFrame
    artifacts: Mapping[str, Path] = field(default_factory=dict)
    pip_requirements: tuple[str, ...] = ("numpy", "pandas")


def code_version() -> str:
    """The git commit of the working tree (``+dirty`` when it has changes), or ``unknown``."""
    root = _TRAINING.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}+dirty" if dirty else commit


class ModelRegistry:
    """Every registered model family (signal models, ensemble, allocator, text model) in one MLflow tracking store."""

    def __init__(self, tracking_uri: str, config: RegistryConfig, audit: AuditLog) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.config = config
        self.audit = audit
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.artifact_location = artifact_location_for(tracking_uri)

    def check_reachable(self) -> None:
        """Fail fast, before any training, when the registry cannot be reached.

        Raises:
            RegistryUnreachable: naming the URI and the cause.
        """
        import os

        # MLflow's HTTP client retries a dead server with backoff for minutes by default.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        try:
            self.client.search_registered_models(max_results=1)
        except Exception as e:  # MLflow raises many types for a dead store; all mean "unreachable"
            raise RegistryUnreachable(f"MLflow registry at {self.tracking_uri} is unreachable: {e}") from e

    def champion_version(self, name: str) -> str | None:
        """The version the champion alias points to, or None when there is no champion."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(name, self.config.champion_alias).version)
        except MlflowException:
            return None

    def load_booster(self, name: str, version: str) -> tuple[lgb.Booster, list[str]]:
        """A registered signal model's booster and its signature's ordered input names."""
        import mlflow

        uri = f"models:/{name}/{version}"
        info = mlflow.models.get_model_info(uri)
        booster = mlflow.lightgbm.load_model(uri)
        return booster, list(info.signature.inputs.input_names())

    def load_pyfunc(self, name: str, version: str) -> tuple[Any, list[str]]:
        """A registered pyfunc model and its signature's input names."""
        import mlflow

        uri = f"models:/{name}/{version}"
        info = mlflow.models.get_model_info(uri)
        return mlflow.pyfunc.load_model(uri), list(info.signature.inputs.input_names())

    def load_allocator_policy(self, version: str) -> Any:
        """The policy layers of an allocator version (a ``PolicyParams``), read from its artifacts."""
        import mlflow

        from training.allocation.policy import PolicyParams

        folder = Path(mlflow.artifacts.download_artifacts(f"models:/allocator/{version}"))
        found = sorted(folder.rglob("*.npz"))
        if not found:
            raise TrainingError(f"allocator v{version} holds no policy file")
        return PolicyParams.load(found[0])

    def log_signal_model(
        self, record: RunRecord, booster: lgb.Booster, features: list[str], fold_rank_ics: list[float]
    ) -> str:
        """Log a run with the booster and register it as the challenger; return the version."""
        import mlflow
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        signature = ModelSignature(
            inputs=Schema([ColSpec("double", f) for f in features]), outputs=Schema([ColSpec("double", "score")])
        )
        with _logged_run(record, self.artifact_location) as run_id:
            for step, ic in enumerate(fold_rank_ics):
                mlflow.log_metric("cv_fold_rank_ic", ic, step=step)
            info = mlflow.lightgbm.log_model(
                booster, name=ARTIFACT, signature=signature, pip_requirements=PIP_REQUIREMENTS
            )
        return self._register(record.name, info.model_uri, run_id, record.tags, record.card)

    def log_ensemble(
        self,
        record: RunRecord,
        weights: Mapping[str, float],
        affine: Mapping[str, tuple[float, float]] | None = None,
    ) -> str:
        """Log the ensemble pyfunc (weights, common-scale maps + blending code) as the challenger."""
        config: dict[str, Any] = {"weights": dict(weights)}
        if affine:
            config["affine"] = {name: [float(shift), float(scale)] for name, (shift, scale) in affine.items()}
        spec = PyfuncSpec(
            code=ENSEMBLE_CODE,
            code_paths=(BLEND_CODE,),
            model_config=config,
            inputs=tuple(("double", c, False) for c in weights),
            outputs=(("double", "score", True), ("double", "coverage", True)),
            input_example=pd.DataFrame({c: [0.5] for c in weights}),
        )
        return self._log_pyfunc(record, spec)

    def log_allocator(self, record: RunRecord, policy_file: Path, model_config: Mapping[str, Any]) -> str:
        """Log the allocator pyfunc (policy layers + observation and weight code) as the challenger."""
        features = list(model_config["features"])
        spec = PyfuncSpec(
            code=ALLOCATOR_CODE,
            code_paths=ALLOCATOR_CODE_PATHS,
            model_config=dict(model_config),
            artifacts={"policy": policy_file},
            inputs=(
                ("string", "ticker", True),
                *(("double", f, False) for f in features),
                ("double", "current_weight", False),
            ),
            outputs=(("string", "ticker", True), ("double", "weight", True)),
            input_example=pd.DataFrame(
                {
                    "ticker": list(model_config["tickers"])[:2],
                    **{f: [0.0, 0.0] for f in features},
                    "current_weight": 0.0,
                }
            ),
        )
        return self._log_pyfunc(record, spec)

    def log_sentiment_text(self, record: RunRecord, model_folder: Path, model_config: Mapping[str, Any]) -> str:
        """Log the text model (weights + tokenizer folder, batching code) and register it as the challenger."""
        spec = PyfuncSpec(
            code=SENTIMENT_TEXT_CODE,
            code_paths=SENTIMENT_TEXT_CODE_PATHS,
            model_config=dict(model_config),
            artifacts={"model": model_folder},
            inputs=(("string", "text", True),),
            outputs=tuple(("double", label, True) for label in model_config["labels"]),
            input_example=pd.DataFrame({"text": ["Net profit rose 12% to A$45 million."]}),
            pip_requirements=tuple(SENTIMENT_TEXT_REQUIREMENTS),
        )
        return self._log_pyfunc(record, spec)

    def _log_pyfunc(self, record: RunRecord, spec: PyfuncSpec) -> str:
        """Log a models-from-code pyfunc (its code file travels with it) and register it as the challenger."""
        import mlflow
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        def schema(columns: tuple[tuple[str, str, bool], ...]) -> Schema:
            return Schema([ColSpec(kind, name, required=required) for kind, name, required in columns])

        with _logged_run(record, self.artifact_location) as run_id:
            info = mlflow.pyfunc.log_model(
                name=ARTIFACT,
                python_model=str(spec.code),
                model_config=spec.model_config,
                artifacts={k: str(v) for k, v in spec.artifacts.items()} or None,
                code_paths=[str(p) for p in spec.code_paths],
                signature=ModelSignature(inputs=schema(spec.inputs), outputs=schema(spec.outputs)),
                input_example=spec.input_example,
                pip_requirements=list(spec.pip_requirements),
            )
        return self._register(record.name, info.model_uri, run_id, record.tags, record.card)

    def _register(self, name: str, model_uri: str, run_id: str, tags: Mapping[str, str], card: str) -> str:
        import mlflow

        version = str(mlflow.register_model(model_uri, name, tags=dict(tags)).version)
        try:
            self.client.update_model_version(name, version, description=card)
            self.client.set_registered_model_alias(name, self.config.challenger_alias, version)
        except Exception:
            # Never leave a version behind without its card and alias.
            self.client.delete_model_version(name, version)
            raise
        self.audit.append("registered", model=name, version=version, run_id=run_id, tags=dict(tags))
        return version

    def promote_if_better(
        self,
        name: str,
        version: str,
        challenger_score: float,
        champion_score: float | None,
        *,
        metric: str = "rank_ic",
        margin: float | None = None,
    ) -> PromotionDecision:
        """Move the champion alias to ``version`` when it beats the champion by the margin.

        With no champion yet, the first version is promoted so the stack can serve; its model card
        says whether it beat the baselines. Scores are test-segment figures named by ``metric``
        (mean rank IC for the signal models, the net Sharpe ratio for the allocator); ``margin``
        defaults to the configured ``promotion_margin``.
        """
        before = self.champion_version(name)
        margin = self.config.promotion_margin if margin is None else margin
        if before is None:
            promoted, reason = True, "no champion yet: first version promoted so the stack can serve"
        elif champion_score is None:
            promoted, reason = True, f"champion v{before} could not be scored on this test segment"
        elif challenger_score > champion_score + margin:
            promoted, reason = True, f"beats champion v{before} by more than the margin {margin:g}"
        else:
            promoted, reason = False, f"does not beat champion v{before} by the margin {margin:g}"
        if promoted:
            self.client.set_registered_model_alias(name, self.config.champion_alias, version)
        decision = PromotionDecision(name, version, promoted, reason, before, challenger_score, champion_score)
        self.audit.append(
            "promoted" if promoted else "kept_champion",
            model=name,
            version=version,
            previous_champion=before,
            **{f"challenger_test_{metric}": challenger_score, f"champion_test_{metric}": champion_score},
            margin=margin,
            reason=reason,
        )
        return decision

    def rollback(self, name: str, reason: str) -> PromotionDecision:
        """Point the champion back at the version it replaced in its last promotion.

        Raises:
            TrainingError: when the audit log records no earlier champion to return to.
        """
        last = self.audit.last("promoted", name)
        current = self.champion_version(name)
        previous = last.get("previous_champion") if last else None
        if previous is None or current is None:
            raise TrainingError(f"'{name}' has no earlier champion to roll back to (see {self.audit.path})")
        self.client.set_registered_model_alias(name, self.config.champion_alias, str(previous))
        self.audit.append("rolled_back", model=name, version=str(previous), replaced=current, reason=reason)
        return PromotionDecision(name, str(previous), True, reason, current, float("nan"), None)


def artifact_location_for(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a SQLite store, else the server's default.

    MLflow's default for a file or SQLite store is ``./mlruns`` under the process's working
    directory, which scatters a run's models outside the data folder that holds its database.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()


@contextmanager
def _logged_run(record: RunRecord, artifact_location: str | None) -> Iterator[str]:
    """An MLflow run with the record's params, metrics, tags, card and tables logged up front."""
    import mlflow

    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_location)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=record.name, tags={"model": record.name, **record.tags}) as run:
        mlflow.log_params({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in record.params.items()})
        mlflow.log_metrics({k: float(v) for k, v in record.metrics.items() if pd.notna(v)})
        mlflow.log_text(record.card, "model_card.md")
        for table_name, table in record.tables.items():
            mlflow.log_text(table.to_csv(index=True), f"{table_name}.csv")
        # start_run's context marks the run FAILED when the body raises.
        yield str(run.info.run_id)
