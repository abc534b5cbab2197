"""Stage ``sentiment``: fine-tune the text model, compare it with the lexicon, register it, score documents.

1. The registry is checked first (an unreachable registry fails in seconds, not after the fine-tune).
2. The labelled corpus, plus the training rows of a real corpus when ``real_text`` says so, is split
   by family; the fine-tune keeps its best epoch on the carved split and a temperature is fitted
   there. The lexicon and the model are reported on the carved split and, when configured, on the
   real corpus's own validation rows, which no choice ever reads
   (:mod:`training.sentiment.evaluation`, :mod:`training.sentiment.report`).
3. The model is registered as ``sentiment_text`` (challenger) and promoted to champion when its
   carved-split macro-F1 beats the champion's on the same sentences by the margin
   (:mod:`training.sentiment.registration`, :func:`training.registry.gate.register_and_gate`).
4. The champion, loaded from the registry exactly as a model server loads it, scores every stored
   document it has not scored yet (:mod:`training.sentiment.scoring`).
"""

from __future__ import annotations

from training.context import RunContext
from training.registry.gate import register_and_gate
from training.registry.model_registry import code_version
from training.sentiment.evaluation import REAL_TEXT, fine_tune_and_evaluate, load_corpus, load_held_out_corpus
from training.sentiment.registration import NAME, text_challenger
from training.sentiment.report import report_evaluation
from training.sentiment.scoring import score_stored_documents
from training.sentiment.text_classifier import TextClassifier
from training.stages.common import open_registry, quiet_libraries


def run(ctx: RunContext) -> dict[str, object]:
    """Fine-tune, evaluate, register and score (see the module docstring)."""
    cfg = ctx.config.sentiment
    if cfg is None or not cfg.enabled:
        print(f"  skipped: the run config '{ctx.config.name}' has no enabled 'sentiment' section", file=ctx.out)
        return {"skipped": "no sentiment section"}
    quiet_libraries()
    registry = open_registry(ctx)
    corpus = load_corpus(cfg)  # a bad corpus fails here, before the model is loaded
    held = load_held_out_corpus(cfg)
    classifier = TextClassifier.from_base(max_length=cfg.max_length, seed=cfg.seed)
    evaluation = fine_tune_and_evaluate(ctx, cfg, classifier, corpus, held)
    report_evaluation(ctx.out, ctx.data_dir / "reports", cfg, evaluation, classifier.max_length)
    challenger = text_challenger(ctx.out, cfg, classifier, evaluation, code=code_version())
    decision = register_and_gate(registry, challenger)
    print(
        f"  registry: {NAME} v{decision.version} {'PROMOTED' if decision.promoted else 'kept as challenger'}: "
        f"{decision.reason}",
        file=ctx.out,
    )
    scored = score_stored_documents(ctx, cfg, registry)
    summary: dict[str, object] = {
        "val_macro_f1": round(evaluation.model.macro_f1, 3),
        "lexicon_macro_f1": round(evaluation.lexicon.macro_f1, 3),
        "temperature": round(evaluation.temperature, 3),
        "version": decision.version,
        "promoted": decision.promoted,
        "documents_scored": scored,
    }
    real = [v for v in evaluation.validations if v.name == REAL_TEXT]
    if real:
        summary |= {
            "real_text_macro_f1": round(real[0].model.macro_f1, 3),
            "real_text_ece": round(real[0].ece_after, 3),
        }
    return summary
