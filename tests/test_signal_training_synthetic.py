"""Three components end to end (technical, fundamental, sentiment signal) on the SYNTHETIC universe.

The bundled real sample has no fundamentals and no documents, so this is the one place models B
and C and a multi-component ensemble are trained and registered from a run: wiring only. Model C
trains on features aggregated from the text model's scores of the generator's announcements (the
``sentiment`` stage, smoke-sized). Every figure is synthetic
and the run says so; nothing here is a quality figure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from feature_repo.schema import FEATURES_BY_VIEW, names
from tests.run_configs import run_yaml, smoke_signals, synthetic_run
from tests.test_pipeline_cli import cli, write_config
from training.store import OfflineStore

CONFIG = run_yaml(
    synthetic_run(
        "synthetic-three-models",
        n_tickers=40,
        n_months=36,
        seed=3,
        sentiment={"smoke_test": True},
        signals=smoke_signals(
            ("2022-01-03", "2023-09-29"),
            ("2023-10-02", "2024-03-28"),
            ("2024-04-01", "2024-12-31"),
            models=("technical", "fundamental", "sentiment_signal"),
        ),
    )
)


@pytest.mark.slow
def test_three_components_train_register_and_blend(tmp_path: Path) -> None:
    import mlflow

    config = write_config(tmp_path / "run.yaml", CONFIG)
    result = cli("demo", "--config", str(config), data_dir=tmp_path / "data", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "SYNTHETIC data: a wiring check, NOT a quality figure" in result.stdout
    assert "REAL data" not in result.stdout
    # Model C's features come from the text model's scores of the stored (synthetic) announcements.
    assert "SYNTHETIC documents" in result.stdout
    for row in ("technical", "fundamental", "sentiment_signal", "ensemble"):
        assert f"\n  {row} " in result.stdout
    uri = f"sqlite:///{tmp_path / 'data' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # an earlier test in this process may have pointed it elsewhere
    info = mlflow.models.get_model_info("models:/fundamental@champion")
    assert info.signature.inputs.input_names() == names(FEATURES_BY_VIEW["fundamental_features"])
    ensemble = mlflow.pyfunc.load_model("models:/ensemble@champion")
    import pandas as pd

    info = mlflow.models.get_model_info("models:/sentiment_signal@champion")
    assert info.signature.inputs.input_names() == names(FEATURES_BY_VIEW["sentiment_features"])
    both = ensemble.predict(pd.DataFrame({"technical": [0.6], "fundamental": [0.4], "sentiment_signal": [0.5]}))
    assert both["coverage"].iloc[0] == pytest.approx(1.0)
    # One component alone: renormalised over what is present, coverage = its weight, the score
    # that component's answer on the common scale.
    weights = ensemble.model_config["weights"]
    assert set(ensemble.model_config["affine"]) == set(weights)
    present = max(weights, key=weights.get)
    shift, scale = ensemble.model_config["affine"][present]
    one = ensemble.predict(pd.DataFrame({present: [0.6]}))
    assert one["score"].iloc[0] == pytest.approx(shift + scale * 0.6)
    assert one["coverage"].iloc[0] == pytest.approx(weights[present])
    client = mlflow.tracking.MlflowClient(tracking_uri=uri, registry_uri=uri)
    text_version = client.get_model_version_by_alias("sentiment_text", "champion").version
    with OfflineStore(tmp_path / "data" / "offline.duckdb") as store:
        scored = store.read("scored_documents")
        documents = store.read("documents")
    by_text_model = scored.loc[scored["model_version"] == str(text_version)]
    assert len(documents) > 0
    assert set(by_text_model["doc_id"]) == set(documents["doc_id"])  # every document scored by the champion
    # The features were aggregated from those scores, not from the generator's stand-in scores.
    assert f"document scores of text model version {text_version}" in result.stdout
    card = client.get_model_version_by_alias("fundamental", "champion").description
    assert "SYNTHETIC" in card and "survivorship" not in card
