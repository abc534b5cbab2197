"""What the registry's gate needs for the text model: its record, card, weights folder and champion macro-F1.

The model is registered as ``sentiment_text`` with its temperature and runtime in ``model_config``
(for ``onnx-int8``: static int8 ONNX when it holds macro-F1 on real text, else dynamic int8 when that
does, else fp32 ONNX; the figures go into the card, params, metrics and version tags) and gated on its
carved-split macro-F1 against the champion's on the same sentences, by the configured margin.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, TextIO

import pandas as pd

from feature_repo.contract import SENTIMENT_TEXT, SENTIMENT_TEXT_TASK, TAG_TASK
from training.registry.gate import Challenger
from training.registry.model_registry import ModelRegistry, RunRecord
from training.sentiment import LABELS
from training.sentiment.card import TextCardFacts, render_text_card
from training.sentiment.config import SentimentRunConfig
from training.sentiment.evaluation import CARVED, REAL_TEXT, Evaluation
from training.sentiment.metrics import classification_report, label_indices
from training.sentiment.realtext import as_markdown
from training.sentiment.runtimes import RuntimeDecision, export_for_runtime, export_onnx
from training.sentiment.text_classifier import ONNX_FILE, TextClassifier

NAME: Final = SENTIMENT_TEXT
BASE_MODEL: Final = "sentence-transformers/all-MiniLM-L6-v2"


def text_challenger(
    out: TextIO, cfg: SentimentRunConfig, classifier: TextClassifier, ev: Evaluation, *, code: str
) -> Challenger:
    """The fine-tuned model for the gate, judged on carved-split macro-F1 with the section's margin."""
    params = _params(cfg, classifier, ev)
    metrics = {"fine_tune_seconds": ev.tuned.seconds}
    for v in ev.validations:
        metrics |= {f"{v.name}_ece_before": v.ece_before, f"{v.name}_ece_after": v.ece_after}
        metrics |= v.model.as_metrics(f"{v.name}") | v.lexicon.as_metrics(f"{v.name}_lexicon")
    record = RunRecord(
        name=NAME,
        params=params | {"train_sentences": len(ev.split.train), "validation_sentences": len(ev.split.valid)},
        metrics=ev.model.as_metrics("val") | ev.lexicon.as_metrics("lexicon_val") | metrics,
        tags={TAG_TASK: SENTIMENT_TEXT_TASK, "code_version": code, "corpus": ev.corpus.description[:250]},
        card=_card(cfg, ev, params, code),
    )

    def log(registry: ModelRegistry, record: RunRecord) -> str:
        return _log(registry, record, out=out, cfg=cfg, classifier=classifier, ev=ev)

    def score_champion(registry: ModelRegistry, version: str) -> float | None:
        return _champion_macro_f1(out, registry, version, ev)

    return Challenger(record, log, ev.model.macro_f1, score_champion, metric="macro_f1", margin=cfg.promotion_margin)


def _params(cfg: SentimentRunConfig, classifier: TextClassifier, ev: Evaluation) -> dict[str, Any]:
    return {
        "epochs": cfg.finetune().epochs,
        "batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "schedule": cfg.schedule,
        "max_length": classifier.max_length,
        "freeze_embeddings": cfg.freeze_embeddings,
        "freeze_layers": cfg.freeze_layers,
        "best_epoch": ev.tuned.best_epoch,
        "temperature": ev.temperature,  # logged again from model_config by MLflow: the same value, unrounded
        "real_text_trained": bool(cfg.real_text and cfg.real_text.train),
        "seed": cfg.seed,
        "runtime": cfg.runtime,
    }


def _card(cfg: SentimentRunConfig, ev: Evaluation, params: dict[str, Any], code: str) -> str:
    facts = TextCardFacts(
        corpus=ev.corpus.description + (" — SMOKE TEST subset" if cfg.smoke_test else ""),
        label_counts={
            side: {str(k): int(v) for k, v in part["label"].value_counts().items()}
            for side, part in (("train", ev.split.train), ("validation", ev.split.valid))
        },
        families={"train": ev.split.train["family"].nunique(), "validation": ev.split.valid["family"].nunique()},
        base_model=BASE_MODEL,
        params=params,
        model=ev.model,
        lexicon=ev.lexicon,
        fine_tune_seconds=ev.tuned.seconds,
        code_version=code,
        project_set=not cfg.corpus,
    )
    return (
        render_text_card(facts)
        + f"\n## Calibration and real text (temperature {ev.temperature:.3f})\n\n"
        + "\n".join(as_markdown(v) for v in ev.validations)
    )


def _log(
    registry: ModelRegistry,
    record: RunRecord,
    *,
    out: TextIO,
    cfg: SentimentRunConfig,
    classifier: TextClassifier,
    ev: Evaluation,
) -> str:
    """Save the weights (and the configured ONNX export) to a folder and log it as the challenger."""
    model_config: dict[str, Any] = {
        "labels": list(LABELS),
        "max_length": classifier.max_length,
        "batch_size": cfg.score_batch_size,
        "temperature": ev.temperature,
        "runtime": cfg.runtime,
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "text_model"  # the artifact's folder name in the registry
        classifier.save(folder)
        if cfg.runtime == "onnx":
            export_onnx(classifier, folder / ONNX_FILE)
        if cfg.runtime == "onnx-int8":
            decision = _export_int8(out, cfg, classifier, ev, folder)
            model_config |= decision.model_config()
            record = with_runtime(record, decision)
        return registry.log_sentiment_text(record, folder, model_config)


def with_runtime(record: RunRecord, decision: RuntimeDecision) -> RunRecord:
    """``record`` with the runtime decision in its params, metrics, version tags and card, for a user to see."""
    params = decision.params()
    return replace(
        record,
        params={**record.params, **params},
        metrics={**record.metrics, **decision.metrics()},
        tags={**record.tags, **params, "runtime_decision": decision.describe()[:500]},
        card=record.card + "\n" + decision.markdown(),
    )


def _export_int8(
    out: TextIO, cfg: SentimentRunConfig, classifier: TextClassifier, ev: Evaluation, folder: Path
) -> RuntimeDecision:
    """Export fp32 ONNX and the first int8 variant (static, then dynamic) that holds its macro-F1.

    Calibration reads real text (the real corpus's training rows) when configured; the check is the
    real validation rows when present (the acceptance rule of the issue), else the carved split.
    """
    held = ev.held
    source = held.train.frame if held is not None else ev.split.train
    calibration = source["sentence"].sample(
        min(len(source), cfg.real_text.calibration_sentences if cfg.real_text else 512), random_state=cfg.seed
    )
    check_frame = held.valid.frame if held is not None else ev.split.valid
    check = (
        REAL_TEXT if held is not None else CARVED,
        check_frame["sentence"].tolist(),
        label_indices(check_frame["label"].tolist()),
    )
    decision = export_for_runtime(
        classifier, folder, calibration_texts=calibration.tolist(), check=check, tolerance=cfg.int8_tolerance
    )
    print(f"  runtime: {decision.describe()}", file=out)
    return decision


def _champion_macro_f1(out: TextIO, registry: ModelRegistry, version: str, ev: Evaluation) -> float | None:
    """The champion's macro-F1 on this run's validation sentences (None: it cannot score them)."""
    try:
        champion, _ = registry.load_pyfunc(NAME, version)
        answer = champion.predict(pd.DataFrame({"text": ev.split.valid["sentence"].tolist()}))
    except Exception as e:  # a broken champion must not block a working challenger; the reason is printed
        print(f"  champion v{version} could not be scored on this validation set: {e}", file=out)
        return None
    predicted = answer[list(LABELS)].to_numpy().argmax(axis=1)
    return classification_report(label_indices(ev.split.valid["label"].tolist()), predicted).macro_f1
