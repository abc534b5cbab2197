"""The LightGBM signal model: it learns a planted signal, is deterministic, explains itself,
refuses a wrong feature signature and survives a save/load round trip."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from training.errors import TrainingError
from training.models import SignalModel, SignalModelParams, contributions, top_contributions

N_ROWS, N_FEATURES, N_TRAIN = 3_000, 6, 2_000


def planted_frame(seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Six noise-level features; the label depends on feature_0 only (plus noise)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(N_ROWS, N_FEATURES)), columns=[f"feature_{i}" for i in range(N_FEATURES)])
    X.iloc[rng.choice(N_ROWS, 100, replace=False), 3] = np.nan  # missing values are scored, not refused
    y = pd.Series((X["feature_0"] + rng.normal(scale=0.7, size=N_ROWS) > 0).astype("int64"), name="label_5d")
    return X, y


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.Series]:
    return planted_frame()


@pytest.fixture(scope="module")
def fitted(data) -> SignalModel:
    X, y = data
    return SignalModel(SignalModelParams(n_estimators=150)).fit(X.iloc[:N_TRAIN], y.iloc[:N_TRAIN])


def test_learns_the_planted_signal_and_not_shuffled_labels(data, fitted) -> None:
    X, y = data
    held_x, held_y = X.iloc[N_TRAIN:], y.iloc[N_TRAIN:]
    auc = roc_auc_score(held_y, fitted.predict_proba(held_x))

    shuffled = y.iloc[:N_TRAIN].sample(frac=1.0, random_state=1).to_numpy()
    null = SignalModel(SignalModelParams(n_estimators=150)).fit(X.iloc[:N_TRAIN], pd.Series(shuffled))
    null_auc = roc_auc_score(held_y, null.predict_proba(held_x))

    assert auc > 0.8
    assert abs(null_auc - 0.5) < 0.1
    assert auc > null_auc + 0.2


def test_probabilities_are_the_sigmoid_of_the_raw_score(data, fitted) -> None:
    X, _ = data
    proba, raw = fitted.predict_proba(X), fitted.score(X)
    assert proba.shape == (N_ROWS,)
    assert ((proba > 0) & (proba < 1)).all()
    np.testing.assert_allclose(proba, 1 / (1 + np.exp(-raw)), rtol=1e-10)


def test_same_seed_gives_identical_predictions_and_another_seed_does_not(data) -> None:
    X, y = data
    params = SignalModelParams(n_estimators=60, seed=11)
    a = SignalModel(params).fit(X, y).predict_proba(X)
    b = SignalModel(params).fit(X, y).predict_proba(X)
    c = SignalModel(params.model_copy(update={"seed": 12})).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_early_stopping_keeps_the_best_round(data) -> None:
    X, y = data
    params = SignalModelParams(n_estimators=2_000, learning_rate=0.1, early_stopping_rounds=10)
    model = SignalModel(params).fit(X.iloc[:N_TRAIN], y.iloc[:N_TRAIN], valid=(X.iloc[N_TRAIN:], y.iloc[N_TRAIN:]))
    assert 1 <= model.num_trees < 2_000
    assert model.booster.best_iteration == model.num_trees


def test_contributions_sum_to_the_raw_score_and_point_at_feature_0(data, fitted) -> None:
    X, _ = data
    held = X.iloc[N_TRAIN:]
    contribs = contributions(fitted, held)

    assert list(contribs.columns) == [*fitted.feature_names, "bias"]
    assert contribs.index.equals(held.index)
    assert np.allclose(contribs.sum(axis=1), fitted.score(held))

    top = contribs.drop(columns="bias").abs().idxmax(axis=1)
    assert (top == "feature_0").mean() > 0.7


def test_top_contributions_sorts_by_absolute_value_and_skips_bias() -> None:
    row = pd.Series({"a": 0.1, "b": -0.9, "c": 0.5, "d": 0.0, "bias": 3.0})
    assert top_contributions(row, k=3) == [("b", -0.9), ("c", 0.5), ("a", 0.1)]
    assert len(top_contributions(row)) == 4


def test_a_frame_with_a_different_signature_is_refused(data, fitted) -> None:
    X, _ = data
    with pytest.raises(TrainingError, match=r"misordered \['feature_0', 'feature_1'\]"):
        fitted.predict_proba(X[["feature_1", "feature_0", *X.columns[2:]]])
    with pytest.raises(TrainingError, match=r"missing \['feature_5'\]"):
        fitted.score(X.drop(columns="feature_5"))
    with pytest.raises(TrainingError, match=r"missing \['feature_2'\]; extra \['momentum'\]"):
        contributions(fitted, X.rename(columns={"feature_2": "momentum"}))
    with pytest.raises(TrainingError, match="not fitted"):
        SignalModel().predict_proba(X)


def test_bad_labels_are_refused(data) -> None:
    X, y = data
    with pytest.raises(TrainingError, match="0/1"):
        SignalModel().fit(X, y * 2)
    with pytest.raises(TrainingError, match="rows"):
        SignalModel().fit(X, y.iloc[:10])


def test_params_refuse_unknown_keys_and_are_frozen() -> None:
    with pytest.raises(ValueError, match="num_leafs"):
        SignalModelParams.model_validate({"num_leafs": 8})
    params = SignalModelParams()
    with pytest.raises(ValueError, match="frozen"):
        params.seed = 3  # type: ignore[misc]


def test_save_load_round_trip_gives_identical_predictions(data, fitted, tmp_path: Path) -> None:
    X, _ = data
    fitted.save(tmp_path / "signal")
    assert sorted(p.name for p in (tmp_path / "signal").iterdir()) == ["model.txt", "signature.json"]

    loaded = SignalModel.load(tmp_path / "signal")
    assert loaded.feature_names == fitted.feature_names
    assert loaded.params == fitted.params
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    pd.testing.assert_frame_equal(contributions(loaded, X), contributions(fitted, X))
    with pytest.raises(TrainingError, match="misordered"):
        loaded.predict_proba(X[X.columns[::-1]])


def test_load_of_a_missing_directory_is_a_training_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="cannot load"):
        SignalModel.load(tmp_path / "nowhere")


def test_model_package_never_imports_mlflow() -> None:
    package = Path(__file__).resolve().parents[1] / "training" / "models"
    imported: set[str] = set()
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert "lightgbm" in imported
    assert "mlflow" not in imported
