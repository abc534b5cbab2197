"""Run configurations for the end-to-end command-line tests: a smoke-sized ``signals:`` section and a run
on the SYNTHETIC universe, each test adding only what it is about."""

from __future__ import annotations

import yaml

SMOKE_TUNING = {"num_samples": 1, "max_concurrent_trials": 1, "seed": 0, "smoke_test": True}


def smoke_signals(
    train: tuple[str, str],
    valid: tuple[str, str],
    test: tuple[str, str],
    *,
    universe: object = "all",
    benchmark: str = "SYNTH_INDEX",
    min_train_sessions: int = 150,
    test_sessions: int = 63,
    models: tuple[str, ...] = ("technical",),
    **extra: object,
) -> dict[str, object]:
    """A ``signals:`` section sized for a wiring check: the 21-session horizon, two walk-forward folds, each
    of ``models`` on its ``<name>_model_v1`` feature service, a top-5 monthly book and the smoke-test search
    (one trial on one fold); ``extra`` adds sections (``learning``, ...)."""
    return {
        "universe": universe,
        "benchmark": benchmark,
        "horizon": 21,
        "segments": {"train": list(train), "valid": list(valid), "test": list(test)},
        "walk_forward": {
            "n_folds": 2,
            "min_train_sessions": min_train_sessions,
            "test_sessions": test_sessions,
            "embargo_sessions": 5,
        },
        "models": {name: {"feature_service": f"{name}_model_v1"} for name in models},
        "evaluation": {"top_k": 5, "rebalance_every": 21},
        "tuning": SMOKE_TUNING,
        **extra,
    }


def synthetic_run(
    name: str, *, n_tickers: int, n_months: int, seed: int, signals: dict[str, object], **sections: object
) -> dict[str, object]:
    """A run on the generator's SYNTHETIC universe, sessions closing at 06:00 UTC, AAA and AAB served
    online; ``sections`` adds the stages a test is about (``allocation``, ``sentiment``, ...)."""
    return {
        "name": name,
        "data": {"kind": "synthetic", "n_tickers": n_tickers, "n_months": n_months, "seed": seed},
        "features": {"session_close_utc": "06:00"},
        "online_tickers": ["AAA", "AAB"],
        "signals": signals,
        **sections,
    }


def run_yaml(config: dict[str, object]) -> str:
    """``config`` as the YAML text of a run file, keys in the order given."""
    return yaml.safe_dump(config, sort_keys=False)
