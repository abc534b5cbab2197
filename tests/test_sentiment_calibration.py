"""Temperature scaling, ECE, the real-text reports, and the max-length choice: numpy only, no model."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from training.errors import TrainingError
from training.sentiment.calibration import (
    calibrated,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)
from training.sentiment.evaluation import choose_max_length
from training.sentiment.realtext import rescale, validate, write_reports
from training.sentiment.text_classifier import softmax


def sampled(temperature: float, n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits / temperature): that temperature calibrates them."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, size=(n, 3))
    p = softmax(logits / temperature)
    labels = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return logits, labels


def test_the_fitted_temperature_recovers_the_one_the_labels_were_drawn_at() -> None:
    for true_t in (0.5, 1.0, 2.5):
        logits, labels = sampled(true_t)
        fitted = fit_temperature(logits, labels)
        assert abs(fitted - true_t) / true_t < 0.05, (true_t, fitted)
        # It is the minimum of the NLL: a step either side costs more.
        nll = negative_log_likelihood(logits, labels, fitted)
        assert nll < negative_log_likelihood(logits, labels, fitted * 1.2)
        assert nll < negative_log_likelihood(logits, labels, fitted / 1.2)


def test_scaling_an_overconfident_model_lowers_its_ece_and_keeps_every_prediction() -> None:
    logits, labels = sampled(3.0)  # the raw logits are three times too sure
    before = expected_calibration_error(softmax(logits), labels)
    t = fit_temperature(logits, labels)
    after = expected_calibration_error(calibrated(logits, t), labels)
    assert before > 0.1 and after < 0.02
    np.testing.assert_array_equal(calibrated(logits, t).argmax(axis=1), logits.argmax(axis=1))
    # From probabilities alone (what a stored prediction keeps): the same calibrated answer.
    np.testing.assert_allclose(rescale(softmax(logits), t), calibrated(logits, t), atol=1e-9)


def test_ece_of_exact_cases() -> None:
    labels = np.array([0, 1, 2, 0])
    assert expected_calibration_error(np.eye(3)[labels], labels) == 0.0  # sure and right
    wrong = np.eye(3)[[1, 2, 0, 1]]
    assert expected_calibration_error(wrong, labels) == 1.0  # sure and always wrong
    # Half right at confidence 0.5 in one bin: calibrated.
    half = np.array([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]])
    assert expected_calibration_error(half, np.array([0, 1])) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="one probability row per label"):
        expected_calibration_error(half, np.array([0]))


def test_fit_temperature_refuses_mismatched_rows() -> None:
    with pytest.raises(TrainingError, match="one row of logits per label"):
        fit_temperature(np.zeros((3, 3)), np.array([0, 1]))
    with pytest.raises(TrainingError, match="one row of logits per label"):
        fit_temperature(np.zeros((0, 3)), np.array([], dtype=int))


def test_reports_are_written_as_json_and_markdown_with_both_scorers(tmp_path: Path) -> None:
    logits, labels = sampled(2.0, n=300)
    lexicon = np.ones_like(labels)  # a scorer that says neutral every time
    figures = validate(
        "real_text",
        "own.csv rows 201-300",
        truth=labels,
        raw_probabilities=softmax(logits),
        lexicon_predicted=lexicon,
        temperature=2.0,
    )
    assert figures.ece_after < figures.ece_before
    assert figures.lexicon.f1["negative"] == 0.0 and figures.lexicon.confusion[:, 1].sum() == 300
    json_path, md_path = write_reports(
        tmp_path / "reports", [figures], {"temperature": 2.0}, now=datetime(2026, 12, 7, tzinfo=UTC)
    )
    assert json_path.name == "sentiment-20261207T000000000000Z.json"
    document = json.loads(json_path.read_text())
    real = document["validation"]["real_text"]
    assert document["facts"] == {"temperature": 2.0} and real["data"] == "own.csv rows 201-300"
    assert real["model"]["n"] == 300 and real["model"]["macro_f1"] == round(figures.model.macro_f1, 4)
    assert len(real["lexicon"]["confusion"]) == 3 and real["ece_after_temperature"] < real["ece_before_temperature"]
    text = md_path.read_text()
    assert "## real_text: own.csv rows 201-300" in text and "loughran_mcdonald" in text and "ECE (15 bins)" in text


def test_max_length_is_the_quantile_rounded_up_to_eight_and_capped() -> None:
    lengths = list(range(1, 101))  # 1..100 tokens
    assert choose_max_length(lengths, 0.95, 128) == 96  # 95.05 -> 96
    assert choose_max_length(lengths, 0.99, 128) == 104  # 99.01 -> 100 -> 104
    assert choose_max_length(lengths, 0.99, 64) == 64
    assert choose_max_length([3, 4, 5], 0.99, 128) == 8
