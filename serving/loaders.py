"""Load one registered version fully and check it against the contract before it may serve.

A loader either returns a version ready to serve or raises a :class:`~serving.errors.ServingError`;
it never returns something half-checked, so a reload can swap the result in without further tests.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow.lightgbm
import mlflow.pyfunc
import pandas as pd
from mlflow.models import Model
from mlflow.models.model import MODEL_CONFIG
from mlflow.pyfunc import PyFuncModel
from mlflow.types import DataType

from feature_repo.contract import (
    ALLOCATOR_INPUTS,
    ALLOCATOR_SERVICE,
    COMPONENT_MODELS,
    ENSEMBLE_OUTPUTS,
    NO_FEATURE_SERVICE,
    SENTIMENT_LABELS,
    SENTIMENT_TEXT_TASK,
    TAG_FEATURE_SERVICE,
    TAG_TASK,
    TEXT_INPUT,
    TICKER_INPUT,
    WEIGHT_OUTPUT,
    service_features,
)
from feature_repo.schema import ALLOCATOR_FEATURES
from serving.errors import ModelLoadError, SignatureMismatch
from serving.registry import Registry, VersionRef
from serving.signature import check_names, check_types, signature_inputs, typed_inputs

_TMP_PREFIX = "portfolio-os-serving-"


@dataclass(frozen=True)
class LoadedSignal:
    """A LightGBM signal-model version whose signature matches its feature service."""

    ref: VersionRef
    booster: lgb.Booster
    features: tuple[str, ...]
    feature_service: str

    @property
    def version(self) -> str:
        """The MLflow version number, as a string."""
        return self.ref.version

    def close(self) -> None:
        """Nothing to release: the booster lives in memory, its download folder is already gone."""


@contextmanager
def _pyfunc_download(
    registry: Registry, ref: VersionRef
) -> Iterator[tuple[tempfile.TemporaryDirectory[str], Path, Model]]:
    """A pyfunc version downloaded into a fresh work folder: the folder, the local model and its
    MLmodel. The folder outlives the block (the loaded model keeps it, :class:`_DownloadedPyfunc`)
    unless the block fails: then it is removed and the error goes on."""
    workdir = tempfile.TemporaryDirectory(prefix=_TMP_PREFIX)
    try:
        local = registry.download(ref, Path(workdir.name))
        yield workdir, local, _read_mlmodel(local, ref, "python_function")
    except BaseException:
        workdir.cleanup()
        raise


class _DownloadedPyfunc:
    """``version`` and ``close`` of a pyfunc version served from its own download folder."""

    ref: VersionRef
    # Models-from-code may read files beside the model while predicting: the folder lives as long as it.
    workdir: tempfile.TemporaryDirectory[str]

    @property
    def version(self) -> str:
        """The MLflow version number, as a string."""
        return self.ref.version

    def close(self) -> None:
        """Remove the download folder (a replaced version's folder goes when the last request drops it)."""
        self.workdir.cleanup()


@dataclass(frozen=True)
class LoadedEnsemble(_DownloadedPyfunc):
    """An ensemble pyfunc version whose inputs are signal-model names."""

    ref: VersionRef
    model: PyFuncModel
    inputs: tuple[str, ...]
    # Models-from-code may read files beside the model while predicting: keep the folder alive.
    workdir: tempfile.TemporaryDirectory[str] = field(repr=False)
    feature_service: str = NO_FEATURE_SERVICE


@dataclass(frozen=True)
class LoadedAllocator(_DownloadedPyfunc):
    """An allocator pyfunc version taking ``ticker``, the ``allocator_v1`` features and ``current_weight``."""

    ref: VersionRef
    model: PyFuncModel
    tickers: frozenset[str]  # the trained universe: a request may name any subset of it
    workdir: tempfile.TemporaryDirectory[str] = field(repr=False)
    feature_service: str = ALLOCATOR_SERVICE
    # A fixed-width policy serves any set of at most this many tickers (tickers is then not a limit).
    max_assets: int | None = None


@dataclass(frozen=True)
class LoadedSentimentText(_DownloadedPyfunc):
    """A text-classifier pyfunc version taking ``text`` and answering one probability per label."""

    ref: VersionRef
    model: PyFuncModel
    workdir: tempfile.TemporaryDirectory[str] = field(repr=False)
    feature_service: str = NO_FEATURE_SERVICE


def _read_mlmodel(local: Path, ref: VersionRef, flavour: str) -> Model:
    try:
        mlmodel = Model.load(str(local / "MLmodel"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{ref.uri} has no readable MLmodel file: {e}") from e
    if flavour not in mlmodel.flavors:
        raise ModelLoadError(f"{ref.uri} is not a {flavour} model (flavours: {', '.join(sorted(mlmodel.flavors))})")
    return mlmodel


def _load_booster(local: Path, ref: VersionRef) -> lgb.Booster:
    try:
        loaded: Any = mlflow.lightgbm.load_model(str(local))
    except Exception as e:  # a corrupt model file can fail in LightGBM's C code with any error type
        raise ModelLoadError(f"cannot load the LightGBM model of {ref.uri}: {e}") from e
    # mlflow.lightgbm also stores scikit-learn wrappers; the contract's format is a bare Booster.
    booster = loaded.booster_ if isinstance(loaded, lgb.LGBMModel) else loaded
    if not isinstance(booster, lgb.Booster):
        raise ModelLoadError(f"{ref.uri} loads as {type(loaded).__name__}, not a lightgbm.Booster")
    return booster


def load_signal(registry: Registry, ref: VersionRef, feature_service: str) -> LoadedSignal:
    """Download, load and check a signal-model version against ``feature_service``.

    Args:
        registry: where the version lives.
        ref: the version to load.
        feature_service: the Feast feature service this server serves (from the contract).

    Raises:
        SignatureMismatch: the signature, the booster or the ``feature_service`` tag disagree with
            the service's ordered features (the message names every difference).
        ModelLoadError: the version is not a LightGBM model or cannot be loaded.
        RegistryUnavailable: the artifacts cannot be downloaded.
    """
    expected = service_features(feature_service)
    with tempfile.TemporaryDirectory(prefix=_TMP_PREFIX) as tmp:
        local = registry.download(ref, Path(tmp))
        mlmodel = _read_mlmodel(local, ref, "lightgbm")
        features = signature_inputs(mlmodel.signature, f"{ref.uri}")
        check_names(expected, features, f"the signature of {ref.uri}", f"feature service '{feature_service}'")
        booster = _load_booster(local, ref)
    check_names(features, booster.feature_name(), f"the booster of {ref.uri}", "its own signature")
    tag = ref.tags.get(TAG_FEATURE_SERVICE)
    if tag != feature_service:
        raise SignatureMismatch(
            f"{ref.uri} is tagged {TAG_FEATURE_SERVICE}={tag!r}; this server serves '{feature_service}'"
        )
    return LoadedSignal(ref=ref, booster=booster, features=tuple(features), feature_service=feature_service)


def _output_names(mlmodel: Model) -> list[str]:
    signature = mlmodel.signature
    return signature.outputs.input_names() if signature is not None and signature.outputs is not None else []


def _load_pyfunc(local: Path, ref: VersionRef) -> PyFuncModel:
    try:
        # suppress_warnings skips MLflow's comparison of the model's requirements with every
        # installed distribution (about 1-4 s per load): the image pins the environment.
        model: PyFuncModel = mlflow.pyfunc.load_model(str(local), suppress_warnings=True)
    except Exception as e:  # models-from-code runs the model's own code: any error type can surface
        raise ModelLoadError(f"cannot load the pyfunc model of {ref.uri}: {e}") from e
    return model


def load_ensemble(registry: Registry, ref: VersionRef) -> LoadedEnsemble:
    """Download, load and check an ensemble pyfunc version.

    Its inputs must be signal-model names (any subset of them) and, when the signature declares
    outputs, they must include ``score`` and ``coverage``.

    Raises:
        SignatureMismatch: unknown inputs or missing outputs.
        ModelLoadError: the version is not a pyfunc model or its code fails to load.
        RegistryUnavailable: the artifacts cannot be downloaded.
    """
    with _pyfunc_download(registry, ref) as (workdir, local, mlmodel):
        inputs = signature_inputs(mlmodel.signature, ref.uri)
        unknown = [name for name in inputs if name not in COMPONENT_MODELS]
        if unknown or not inputs:
            raise SignatureMismatch(
                f"{ref.uri} takes inputs {inputs}; an ensemble takes signal-model names only ({COMPONENT_MODELS})"
            )
        outputs = _output_names(mlmodel)
        missing = [name for name in ENSEMBLE_OUTPUTS if outputs and name not in outputs]
        if missing:
            raise SignatureMismatch(f"{ref.uri} declares outputs {outputs}; missing {missing}")
        model = _load_pyfunc(local, ref)
    return LoadedEnsemble(ref=ref, model=model, inputs=tuple(inputs), workdir=workdir)


def _check_allocator_signature(mlmodel: Model, ref: VersionRef) -> None:
    what = f"the signature of {ref.uri}"
    inputs = typed_inputs(mlmodel.signature, ref.uri)
    check_names(
        ALLOCATOR_INPUTS,
        [name for name, _ in inputs],
        what,
        f"the allocator contract ({TICKER_INPUT}, the '{ALLOCATOR_SERVICE}' features, current_weight)",
    )
    expected = dict.fromkeys(ALLOCATOR_INPUTS, DataType.double) | {TICKER_INPUT: DataType.string}
    check_types(inputs, expected, what)
    outputs = _output_names(mlmodel)
    if outputs and WEIGHT_OUTPUT not in outputs:
        raise SignatureMismatch(f"{ref.uri} declares outputs {outputs}; missing '{WEIGHT_OUTPUT}'")


def _trained_universe(mlmodel: Model, ref: VersionRef) -> frozenset[str]:
    """The ``tickers`` of the version's model_config; its ``features`` must be the service's, in order."""
    config = mlmodel.flavors["python_function"].get(MODEL_CONFIG) or {}
    tickers = config.get("tickers")
    if not isinstance(tickers, list) or not tickers or not all(isinstance(t, str) and t for t in tickers):
        raise ModelLoadError(f"{ref.uri} has no model_config 'tickers' (the trained universe, a list of names)")
    features = config.get("features")
    if features is not None:
        check_names(
            ALLOCATOR_FEATURES,
            [str(f) for f in features],
            f"the model_config features of {ref.uri}",
            f"feature service '{ALLOCATOR_SERVICE}'",
        )
    return frozenset(tickers)


def load_allocator(registry: Registry, ref: VersionRef) -> LoadedAllocator:
    """Download, load and check an allocator pyfunc version.

    Its signature's inputs must be exactly ``ticker`` (string), the ``allocator_v1`` features
    (double, in the schema's order) and ``current_weight`` (double); its ``feature_service`` tag
    must be ``allocator_v1``; its model_config must name the trained universe (``tickers``).

    Raises:
        SignatureMismatch: the signature, the outputs, the features or the tag disagree (every
            difference named).
        ModelLoadError: the version is not a pyfunc model, lacks its universe, or its code fails to load.
        RegistryUnavailable: the artifacts cannot be downloaded.
    """
    with _pyfunc_download(registry, ref) as (workdir, local, mlmodel):
        _check_allocator_signature(mlmodel, ref)
        tag = ref.tags.get(TAG_FEATURE_SERVICE)
        if tag != ALLOCATOR_SERVICE:
            raise SignatureMismatch(
                f"{ref.uri} is tagged {TAG_FEATURE_SERVICE}={tag!r}; this server serves '{ALLOCATOR_SERVICE}'"
            )
        tickers = _trained_universe(mlmodel, ref)
        max_assets = _max_assets(mlmodel, ref)
        model = _load_pyfunc(local, ref)
    return LoadedAllocator(ref=ref, model=model, tickers=tickers, workdir=workdir, max_assets=max_assets)


def _max_assets(mlmodel: Model, ref: VersionRef) -> int | None:
    """The model_config's ``max_assets`` (a fixed-width policy), or None for a fixed-universe one."""
    config = mlmodel.flavors["python_function"].get(MODEL_CONFIG) or {}
    value = config.get("max_assets")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelLoadError(f"{ref.uri} has model_config max_assets {value!r}; expected an integer >= 1")
    return value


def _check_sentiment_text_signature(mlmodel: Model, ref: VersionRef) -> None:
    what = f"the signature of {ref.uri}"
    inputs = typed_inputs(mlmodel.signature, ref.uri)
    check_names([TEXT_INPUT], [name for name, _ in inputs], what, f"the text-model contract (one '{TEXT_INPUT}')")
    check_types(inputs, {TEXT_INPUT: DataType.string}, what)
    outputs = _output_names(mlmodel)
    if outputs and sorted(outputs) != sorted(SENTIMENT_LABELS):
        raise SignatureMismatch(f"{ref.uri} declares outputs {outputs}; expected exactly {list(SENTIMENT_LABELS)}")
    tag = ref.tags.get(TAG_TASK)
    if tag != SENTIMENT_TEXT_TASK:
        raise SignatureMismatch(f"{ref.uri} is tagged {TAG_TASK}={tag!r}; this server serves '{SENTIMENT_TEXT_TASK}'")


def _warm_up(model: PyFuncModel, ref: VersionRef) -> None:
    """Score one sentence before the version may serve: its code runs, its answer has the contract's shape."""
    try:
        result = model.predict(pd.DataFrame({TEXT_INPUT: ["Shares were unchanged after the results."]}))
    except Exception as e:  # models-from-code runs the model's own code: any error type can surface
        raise ModelLoadError(f"{ref.uri} fails to score a sentence: {type(e).__name__}: {e}") from e
    frame = result if isinstance(result, pd.DataFrame) else pd.DataFrame(result)
    missing = [label for label in SENTIMENT_LABELS if label not in frame.columns]
    if missing or len(frame) != 1:
        raise ModelLoadError(
            f"{ref.uri} answered columns {list(frame.columns)} x {len(frame)} rows for one sentence; "
            f"expected {list(SENTIMENT_LABELS)} x 1"
        )


def load_sentiment_text(registry: Registry, ref: VersionRef) -> LoadedSentimentText:
    """Download, load, check and warm up a ``sentiment_text`` pyfunc version.

    Its signature's input must be exactly ``text`` (string), its declared outputs (if any) exactly
    ``negative``, ``neutral`` and ``positive``, and it must be tagged ``task=sentiment_text``. One
    sentence is scored before it may serve (the first inference of a transformer is the slowest).

    Raises:
        SignatureMismatch: the signature, the outputs or the tag disagree (every difference named).
        ModelLoadError: the version is not a pyfunc model, its code fails to load, or it cannot score.
        RegistryUnavailable: the artifacts cannot be downloaded.
    """
    with _pyfunc_download(registry, ref) as (workdir, local, mlmodel):
        _check_sentiment_text_signature(mlmodel, ref)
        model = _load_pyfunc(local, ref)
        _warm_up(model, ref)
    return LoadedSentimentText(ref=ref, model=model, workdir=workdir)
