"""``python -m monitoring SUBCOMMAND`` (``portfolio-os monitor SUBCOMMAND``): every monitoring job.

Subcommands: ``drift`` (Evidently feature drift), ``prediction-drift`` (drift of each model's
scores), ``decay`` (rolling IC per model), ``retrain`` (the drift/decay-triggered retraining
decision), ``sentinel`` (the data-quality IsolationForest), ``briefing-facts`` (the daily briefing's
stored facts), ``rules`` (check the Prometheus alert rules with promtool), ``dashboards`` (write or list
the Grafana dashboards), ``serve-metrics`` / ``write-metrics`` (export the job metrics) and
``prometheus`` (a local Prometheus on 127.0.0.1 scraping ``make serve``).

Exit codes: 0 fine, 1 a finding (drift detected, decay, retrain recommended, a failed check),
2 an error (bad arguments, missing data or tools).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from feature_repo.import_costs import skip_typeguard_instrumentation
from feature_repo.telemetry import telemetry_off
from monitoring import reports
from monitoring.errors import MonitoringError
from monitoring.settings import MonitoringSettings, get_settings

if TYPE_CHECKING:
    from monitoring.decay import DecayResult

EXIT_FINDING = 1
EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m monitoring", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="default: $PORTFOLIO_OS_DATA_DIR or ./data")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    drift = sub.add_parser("drift", help="Evidently drift per feature view; writes reports and latest summaries")
    drift.add_argument("--reference", required=True, help="champion training window, 2005-01-01:2006-12-31")
    recent = drift.add_mutually_exclusive_group(required=True)
    recent.add_argument("--current", help="current window, YYYY-MM-DD:YYYY-MM-DD")
    recent.add_argument("--current-sessions", type=int, help="the newest N sessions of each view")
    drift.add_argument("--views", default=None, help="comma-separated feature views (default: all with rows)")
    pdrift = sub.add_parser(
        "prediction-drift",
        help="Evidently drift of each model's scores, the newest sessions vs earlier ones (exit 1: a model drifted)",
    )
    pdrift.add_argument("--predictions", type=Path, default=None, help="default: <data>/signals/predictions.parquet")
    pdrift.add_argument("--current-sessions", type=int, default=63, help="the newest N logged dates (default 63)")
    decay = sub.add_parser("decay", help="rolling IC per model; writes reports/decay/latest.json")
    decay.add_argument(
        "--predictions",
        type=Path,
        default=None,
        help="Parquet/CSV: date, ticker, model, score (default: <data>/signals/predictions.parquet, the train "
        "stage's out-of-sample scores)",
    )
    decay.add_argument(
        "--outcomes",
        type=Path,
        default=None,
        help="Parquet/CSV: date, ticker, known_at, fwd_excess_* (default: <data>/signals/outcomes.parquet)",
    )
    decay.add_argument("--as-of", type=date.fromisoformat, default=date.today(), help="use outcomes known by then")
    decay.add_argument("--horizon", type=int, default=21)
    decay.add_argument(
        "--feature-view", default="technical_features", help="also the rolling IC of this view's top features"
    )
    decay.add_argument("--top-features", type=int, default=5, help="how many of its features (0: none; default 5)")
    retrain = sub.add_parser("retrain", help="decide from the latest drift and decay summaries")
    retrain.add_argument("--launch", action="store_true", help="run `python -m training run --stages train` if due")
    retrain.add_argument("--config", type=Path, default=None, help="the run configuration training gets (--config)")
    retrain.add_argument(
        "--stages", default="train", help="the training stages to launch (default train; e.g. train,allocate)"
    )
    _add_sentinel_parsers(sub)
    rules = sub.add_parser("rules", help="promtool check/test the rules; sync the chart copy; print the CRD")
    rules.add_argument("action", choices=["check", "test", "sync-chart", "prometheus-rule"])
    dashboards = sub.add_parser("dashboards", help="write the dashboards (and the chart copies)")
    dashboards.add_argument("action", choices=["write", "list"])
    serve = sub.add_parser("serve-metrics", help="serve monitoring's /metrics (127.0.0.1 unless told)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    write = sub.add_parser("write-metrics", help="write the metrics in text format (CronJob without a server)")
    write.add_argument("path", type=Path)
    prom = sub.add_parser("prometheus", help="a local Prometheus with the alert rules, scraping the local stack")
    prom.add_argument("--port", type=int, default=9090, help="Prometheus port on 127.0.0.1 (default 9090)")
    prom.add_argument("--gateway", default="127.0.0.1:8000", help="gateway host:port (make serve's default)")
    prom.add_argument(
        "--models", default="127.0.0.1:8081,127.0.0.1:8082", help="model servers host:port, comma-separated"
    )
    prom.add_argument("--exporter-port", type=int, default=9108, help="monitoring's own /metrics (127.0.0.1)")
    return parser


def _add_sentinel_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sentinel = sub.add_parser(
        "sentinel",
        help="IsolationForest over daily per-ticker statistics; writes anomalies, the summary and the "
        "data_quality view (materialised online unless --no-materialize); exit 1: anomalies on the newest session",
    )
    sentinel.add_argument("--reference", required=True, help="fitting window, 2005-01-01:2006-12-31")
    sentinel.add_argument("--current", default=None, help="scored window (default: every session after the reference)")
    sentinel.add_argument("--contamination", type=float, default=0.001, help="share of reference rows flagged")
    sentinel.add_argument("--no-materialize", action="store_true", help="write the files only")
    facts = sub.add_parser(
        "briefing-facts",
        help="write the stored facts of the daily briefings (GET /v1/briefing) under reports/briefing/",
    )
    facts.add_argument("--sessions", type=int, default=5, help="the newest N sessions (default 5; 0: all)")
    facts.add_argument("--from", dest="start", type=date.fromisoformat, default=None, help="first session")
    facts.add_argument("--to", dest="end", type=date.fromisoformat, default=None, help="last session")


def _sentinel(args: argparse.Namespace, data_dir: Path) -> int:
    from monitoring.sentinel.job import run
    from monitoring.sentinel.model import SentinelParams
    from monitoring.windows import Window

    if not 0.0 < args.contamination < 0.5:
        raise MonitoringError(f"--contamination must be in (0, 0.5), not {args.contamination}")
    result = run(
        data_dir,
        Window.parse(args.reference),
        current=Window.parse(args.current) if args.current else None,
        params=SentinelParams(contamination=args.contamination),
        materialize=not args.no_materialize,
    )
    summary = result.summary
    print(
        f"sentinel: {summary['rows_scored']:,} rows scored {summary['scored']['start']}..{summary['scored']['end']}, "
        f"{summary['anomalies_total']} anomalies; newest session {summary['newest_date']}: "
        f"{summary['anomalies_by_class']} ({summary['seconds']:.1f} s)"
    )
    return EXIT_FINDING if sum(summary["anomalies_by_class"].values()) else 0


def _briefing_facts(args: argparse.Namespace, data_dir: Path) -> int:
    from monitoring.briefing.job import run

    settings = get_settings()
    facts = run(
        data_dir, last=args.sessions or None, start=args.start, end=args.end,
        window=settings.decay_window, tstat_min=settings.decay_tstat_min,
    )  # fmt: skip
    print(f"briefing facts: {len(facts)} session(s), {facts[0].session}..{facts[-1].session}")
    return 0


def _read_table(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    for column in ("date", "known_at"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column])
    return frame


def _drift(args: argparse.Namespace, data_dir: Path) -> int:
    from feature_repo.schema import FEATURES_BY_VIEW
    from monitoring.drift import load_view, run_view
    from monitoring.windows import Window, last_sessions

    started, detected = time.perf_counter(), False
    views = args.views.split(",") if args.views else list(FEATURES_BY_VIEW)
    for view in views:
        frame = load_view(data_dir, view)
        if frame.empty and not args.views:
            print(f"{view}: skipped (no rows)")
            continue
        current = Window.parse(args.current) if args.current else last_sessions(frame, args.current_sessions)
        result = run_view(
            data_dir, view, Window.parse(args.reference), current, reports_dir=data_dir / "reports",
            drift_share=get_settings().drift_share_threshold, frame=frame,
        )  # fmt: skip
        detected |= result.detected
        drifted = [f.feature for f in result.features if f.detected]
        print(f"{view}: share {result.share:.2f} drift={result.detected} ({result.duration_seconds:.1f}s) {drifted}")
    print(f"drift check wall time {time.perf_counter() - started:.1f}s")
    return EXIT_FINDING if detected else 0


def _prediction_drift(args: argparse.Namespace, data_dir: Path) -> int:
    from monitoring.drift import run_predictions

    path = args.predictions or data_dir / "signals" / "predictions.parquet"
    if not path.exists():
        raise MonitoringError(f"{path} does not exist: run the train stage first, or pass --predictions")
    result = run_predictions(
        _read_table(path), current_sessions=args.current_sessions, reports_dir=data_dir / "reports",
        drift_share=get_settings().drift_share_threshold,
    )  # fmt: skip
    for f in result.features:
        print(f"{f.feature}: {f.method} {f.score:.3f} (threshold {f.threshold:g}) drift={f.detected}")
    skipped = ", ".join(f"{k} ({v})" for k, v in result.skipped.items())
    print(
        f"predictions: share {result.share:.2f} drift={result.detected}" + (f"; skipped {skipped}" if skipped else "")
    )
    # Unlike a feature view, one model whose scores moved is a finding on its own.
    return EXIT_FINDING if any(f.detected for f in result.features) else 0


def _decay(args: argparse.Namespace, data_dir: Path) -> int:
    from monitoring.decay import all_models_decay

    settings = get_settings()
    predictions = args.predictions or data_dir / "signals" / "predictions.parquet"
    outcomes = args.outcomes or data_dir / "signals" / "outcomes.parquet"
    for path in (predictions, outcomes):
        if not path.exists():
            raise MonitoringError(f"{path} does not exist: run the train stage first, or pass --predictions/--outcomes")
    results = all_models_decay(
        _read_table(predictions), _read_table(outcomes), as_of=args.as_of,
        window=settings.decay_window, horizon=args.horizon, tstat_min=settings.decay_tstat_min,
    )  # fmt: skip
    features = _feature_decay(args, data_dir, _read_table(outcomes), settings) if args.top_features > 0 else []
    reports.write_json(
        reports.latest_decay_file(data_dir / "reports"),
        {"models": [r.to_dict() for r in results], "features": [r.to_dict() for r in features]},
    )
    for r in [*results, *features]:
        print(f"{r.model}: rank IC {r.rolling_rank_ic:+.3f} t {r.rank_ic_tstat:.2f} decayed={r.decayed}")
    # A model's decay is the finding; its features' rolling ICs explain it and do not count on their own.
    return EXIT_FINDING if any(r.decayed for r in results) else 0


def _feature_decay(
    args: argparse.Namespace, data_dir: Path, outcomes: pd.DataFrame, settings: MonitoringSettings
) -> list[DecayResult]:
    from feature_repo.definitions import EVENT_TIMESTAMP
    from feature_repo.schema import FEATURES_BY_VIEW
    from monitoring.decay import feature_decay
    from monitoring.drift import UNTESTED_SUFFIXES, load_view

    if args.feature_view not in FEATURES_BY_VIEW:
        raise MonitoringError(f"unknown feature view {args.feature_view!r}; known: {sorted(FEATURES_BY_VIEW)}")
    rows = load_view(data_dir, args.feature_view)
    if rows.empty:
        return []
    stamps = pd.to_datetime(rows[EVENT_TIMESTAMP])
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    rows = rows.assign(date=stamps.dt.normalize())
    # Cross-sectional ranks and z-scores order names exactly as their raw feature does: not separate "top" features.
    names = [
        s.name
        for s in FEATURES_BY_VIEW[args.feature_view]
        if s.dtype != "int64" and not s.name.endswith(UNTESTED_SUFFIXES)
    ]
    return feature_decay(
        rows, outcomes, names, as_of=args.as_of, top=args.top_features, window=settings.decay_window,
        horizon=args.horizon, tstat_min=settings.decay_tstat_min,
    )  # fmt: skip


def _retrain(args: argparse.Namespace, data_dir: Path) -> int:
    from monitoring.decay import DecayResult
    from monitoring.drift import ViewDrift
    from monitoring.retrain import decide, launch, record

    reports_dir = data_dir / "reports"
    drift = [ViewDrift.from_dict(s) for s in reports.latest_drift_summaries(reports_dir)]
    decay_file = reports.latest_decay_file(reports_dir)
    decay = [DecayResult(**m) for m in reports.read_json(decay_file)["models"]] if decay_file.exists() else []
    decision = decide(drift, decay)
    print("retrain recommended" if decision.recommended else "no retrain needed", *decision.reasons, sep="\n  ")
    log = reports_dir / "retrain_decisions.jsonl"
    if decision.recommended and args.launch:
        extra = ["--data-dir", str(data_dir), *(["--config", str(args.config)] if args.config else [])]
        code = launch(extra, stages=args.stages)
        record(log, decision, drift, decay, launched=True, exit_code=code)
        return code
    record(log, decision, drift, decay, launched=False, exit_code=None)
    return EXIT_FINDING if decision.recommended else 0


def _rules(args: argparse.Namespace) -> int:
    from monitoring import prometheus_rule, rules

    if args.action == "sync-chart":
        print(rules.sync_chart())
        return 0
    if args.action == "prometheus-rule":
        print(prometheus_rule.render_yaml(), end="")
        return 0
    done = rules.check_rules() if args.action == "check" else rules.run_rule_tests()
    print(done.stdout, done.stderr, sep="", end="")
    return 0 if done.returncode == 0 else EXIT_FINDING


def _dashboards(args: argparse.Namespace) -> int:
    from monitoring import dashboards

    if args.action == "write":
        print(*dashboards.write_all(), sep="\n")
    else:
        print(*(f"{uid}: {title}" for uid, (title, _) in dashboards.DASHBOARDS.items()), sep="\n")
    return 0


def _serve(args: argparse.Namespace, data_dir: Path) -> int:
    from monitoring import exporter

    settings = get_settings()
    host, port = args.host or settings.metrics_host, args.port or settings.metrics_port
    print(f"serving monitoring metrics on http://{host}:{port}/metrics", flush=True)
    exporter.serve(data_dir, host, port)
    return 0


def _write_metrics(args: argparse.Namespace, data_dir: Path) -> int:
    from monitoring import exporter

    print(exporter.write_textfile(args.path, data_dir))
    return 0


def _prometheus(args: argparse.Namespace, data_dir: Path) -> int:
    """Prometheus on 127.0.0.1 with the rules file, scraping gateway, model servers and this exporter."""
    import threading
    import time

    from monitoring import exporter
    from monitoring.local_prometheus import local_prometheus, scrape_config
    from monitoring.rules import RULES_FILE

    threading.Thread(target=exporter.serve, args=(data_dir, "127.0.0.1", args.exporter_port), daemon=True).start()
    targets = {
        "gateway": [args.gateway],
        "model-servers": [m.strip() for m in args.models.split(",") if m.strip()],
        "monitoring": [f"127.0.0.1:{args.exporter_port}"],
    }
    config = scrape_config(targets, [RULES_FILE])
    with local_prometheus(config, data_dir / "prometheus", args.port) as api:
        print(f"Prometheus: {api.base_url}  (targets: {targets}); Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            print("stopping Prometheus", flush=True)
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace, Path], int]] = {
    "drift": _drift,
    "prediction-drift": _prediction_drift,
    "decay": _decay,
    "retrain": _retrain,
    "sentinel": _sentinel,
    "briefing-facts": _briefing_facts,
    "rules": lambda args, _: _rules(args),
    "dashboards": lambda args, _: _dashboards(args),
    "serve-metrics": _serve,
    "write-metrics": _write_metrics,
    "prometheus": _prometheus,
}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run one command, map failures to exit code 2 with a one-line reason."""
    _quiet_telemetry()
    args = build_parser().parse_args(argv)
    data_dir = (args.data_dir or get_settings().data_dir).resolve()
    try:
        return HANDLERS[args.command](args, data_dir)
    except (MonitoringError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR


def _quiet_telemetry() -> None:
    # Evidently and Feast phone home unless told not to; monitoring jobs never do.
    telemetry_off()
    skip_typeguard_instrumentation()  # before Feast loads: seconds of import (feature_repo.import_costs)
    # Evidently's and litestar's own deprecation notices say nothing about the user's data.
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)


if __name__ == "__main__":
    sys.exit(main())
