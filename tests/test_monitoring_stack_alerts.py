"""A real Prometheus scraping the real gateway and model servers; a killed model server fires its alerts.

The stack is the one ``make serve`` runs (``serving.launcher.plan``/``running``: one process group
per service, all on free 127.0.0.1 ports, every group stopped afterwards): ``python -m
serving.technical``, ``serving.fundamental`` and ``serving.ensemble`` on a throwaway MLflow registry
(SQLite) holding tiny LightGBM champions trained on SYNTHETIC data and the test ensemble, and
``python -m api`` on a SYNTHETIC Feast repo. Two component models, because with one the gateway
has nothing left to degrade to and answers 503. Prometheus scrapes all four every second and
evaluates the project's rules file with every ``for:`` shortened to 1 s.

Checked: every series the rules and dashboards read that the gateway or a model server exports is
scraped from the job that should export it; nothing alerts while the stack is healthy; after a
SIGKILL of the technical server, the alerts whose meaning is "a model server is gone" fire for
``technical`` (and those that mean something else do not), and the gateway keeps answering 200,
degraded, meanwhile. The latency from the kill to each alert firing is printed (``-s``).
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from api.db import init_db, make_engine
from api.keys import ALL_SCOPES, create_key
from feature_repo.contract import service_features
from monitoring import contract, dashboards
from monitoring.exporter import EXPORTED_METRICS
from monitoring.local_prometheus import PrometheusAPI, local_prometheus, scrape_config
from monitoring.promql import base_name, metric_names
from monitoring.rules import load_rules, with_short_for
from serving.launcher import Service, free_ports, plan, running
from tests.gateway_fixtures.feast_repo import build_feature_repo
from tests.gateway_fixtures.fixtures import PEPPER
from tests.gateway_fixtures.load import Answer, in_background
from tests.servers import free_port
from tests.serving_fixtures import ENSEMBLE_WEIGHTS, Registry, mlflow_uris_restored, server_env, train_booster, wait_for

# The timeout only stops a hung run: 91 s was seen on two cores at a load average of 10.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

MODELS = ("technical", "fundamental", "ensemble")
KILLED = "technical"
# Alerts that mean "a model server vanished": they must fire for the killed model.
EXPECTED_FIRING = ("PortfolioOSModelReadyMissing", "PortfolioOSCircuitOpen", "PortfolioOSFallbackRateHigh")
# Alerts that must stay quiet: other model servers still report readiness (not absent); a dead server
# reports nothing (not "not ready"); degraded answers are 200s (no error rate).
EXPECTED_QUIET = ("PortfolioOSModelReadyAbsent", "PortfolioOSModelNotReady", "PortfolioOSGatewayErrorRateHigh")
# Only stops a hung test (the latencies are printed, not asserted).
ALERT_BUDGET_S = 60.0
# Series no process of this stack exports, by design: written by `python -m monitoring`'s exporter.
FROM_MONITORING = frozenset(EXPORTED_METRICS)
# Series of the scored universe, which this stack runs without (see _services); the gateway's
# scored-universe tests assert them.
SCORED_SERIES = frozenset(n for n in contract.exposed_series_names() if "_scored_universe_" in n)


@dataclass
class Load:
    """A client sending /v1/signals about five times a second until stopped."""

    url: str
    key: str
    tickers: str
    answers: list[Answer] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        try:
            with httpx.Client(base_url=self.url, headers=headers, timeout=10.0) as client:
                while not self.stop.is_set():
                    sent = time.monotonic()
                    response = client.get("/v1/signals", params={"tickers": self.tickers})
                    body = response.json() if response.status_code == 200 else {}
                    present = bool(body) and body["signals"][0]["components"]["technical"] is not None
                    answer = Answer(sent, time.monotonic(), response.status_code, body.get("degraded"), present)
                    self.answers.append(answer)
                    self.stop.wait(0.2)
        except BaseException as e:  # surfaced by the test's assertion on ``errors``
            self.errors.append(e)

    @contextmanager
    def running(self) -> Iterator[Load]:
        with in_background(self.run, self.stop, join_s=15):
            yield self


def _registry(folder: Path) -> str:
    """Champions of technical, fundamental (SYNTHETIC boosters) and the test ensemble; the registry URI."""
    with mlflow_uris_restored():
        registry = Registry.create(folder / "registry", folder)
        for seed, model in enumerate(("technical", "fundamental"), start=11):
            service = f"{model}_model_v1"
            booster = train_booster(service_features(service), seed=seed)
            assert registry.register_signal(model, booster, feature_service=service) == "1"
        assert registry.register_ensemble(ENSEMBLE_WEIGHTS) == "1"
    return registry.uri


def _keys(database_url: str) -> tuple[str, str]:
    """A demo key with room for the load, and a key allowed one request a minute (to see a 429)."""
    engine = make_engine(database_url)
    try:
        init_db(engine)
        demo = create_key(engine, "demo", ALL_SCOPES, "100000/minute", PEPPER.encode())
        tight = create_key(engine, "tight", ALL_SCOPES, "1/minute", PEPPER.encode())
    finally:
        engine.dispose()
    return demo.plaintext, tight.plaintext


def _services(tmp_path: Path, tracking_uri: str, database_url: str) -> list[Service]:
    env = server_env(tracking_uri) | {
        "PORTFOLIO_OS_DATA_DIR": str(tmp_path / "data"),
        "PORTFOLIO_OS_DATABASE_URL": database_url,
        "PORTFOLIO_OS_API_KEY_PEPPER": PEPPER,
        # Two cores boot four Python servers and Prometheus: a healthy call must never time out.
        "PORTFOLIO_OS_MODEL_TIMEOUT_S": "2.0",
        # No score cache: a request sent after the kill cannot be answered with the dead model's score,
        # however long the machine takes (with the 2 s cache, that depended on how busy it was).
        "PORTFOLIO_OS_SCORE_CACHE_SECONDS": "0",
        # The per-request path, where the circuit and fallback alerts come from. With the scored
        # universe on, a snapshot stays valid while features and versions are unchanged, so a dead
        # server is never called for signals (tests/test_gateway_scored.py covers that path and
        # its metrics, SCORED_SERIES below).
        "PORTFOLIO_OS_SCORED__ENABLED": "false",
    }
    return plan(list(MODELS), free_ports(len(MODELS) + 1), env)


def _expected_series() -> dict[str, set[str]]:
    """Series the rules or dashboards read, and every contract series -> the jobs that must export them.

    Monitoring's own series (drift, freshness, decay) come from ``python -m monitoring``'s exporter,
    which is not part of this stack; any other name must belong to the gateway or the model servers.
    """
    groups = load_rules()["groups"]
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    used = {n for g in groups for r in g["rules"] for n in metric_names(r["expr"])}
    for board in dashboards.render_all().values():
        used |= {n for e in dashboards.exprs(yaml.safe_load(board)) for n in metric_names(e)}
    # Plus every contract name, so a series no rule or dashboard reads yet is still proven exported.
    expected: dict[str, set[str]] = {}
    for name in sorted(((used - recorded) | contract.exposed_series_names()) - FROM_MONITORING - SCORED_SERIES):
        base = base_name(name, contract.HISTOGRAMS)
        if base in contract.GATEWAY_METRICS:
            expected[name] = {"gateway"}
        elif base in contract.MODEL_SERVER_METRICS:
            expected[name] = set(MODELS)
        else:
            raise AssertionError(f"{name} is read by a rule or dashboard but no process exports it")
    return expected


def _missing_series(api: PrometheusAPI, expected: dict[str, set[str]]) -> dict[str, set[str]]:
    """Series name -> the jobs expected to export it that Prometheus has no sample from (yet)."""
    missing = {}
    for name, jobs in expected.items():
        absent = jobs - {r["metric"]["job"] for r in api.query(f"count by (job) ({name})")}
        if absent:
            missing[name] = absent
    return missing


def _traffic(gateway: str, key: str, tight_key: str, tickers: list[str]) -> None:
    """Requests that make every event-driven series appear: signals, an explanation, an allocation, a 429."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=gateway, timeout=10.0) as client:
        signals = client.get("/v1/signals", params={"tickers": ",".join(tickers)}, headers=headers)
        assert signals.status_code == 200 and signals.json()["degraded"] is False, signals.text
        assert signals.json()["model_versions"] == {"technical": "1", "fundamental": "1", "ensemble": "1"}
        explained = client.get(f"/v1/explanations/{tickers[0]}", headers=headers)
        assert explained.status_code == 200, explained.text
        allocation = client.post("/v1/allocations", json={"universe": tickers[:3], "capital": 1000}, headers=headers)
        assert allocation.status_code == 200 and allocation.json()["method"] != "allocator", allocation.text
        tight = {"Authorization": f"Bearer {tight_key}"}
        statuses = [client.get("/v1/signals", params={"tickers": tickers[0]}, headers=tight).status_code for _ in "ab"]
        assert statuses == [200, 429], statuses


def _check_series(api: PrometheusAPI) -> None:
    expected = _expected_series()
    try:
        wait_for(lambda: not _missing_series(api, expected), 30, "every series from its job")
    except AssertionError as e:
        raise AssertionError(f"{e}; missing (name -> jobs): {_missing_series(api, expected)}") from e
    info = {
        (r["metric"]["job"], r["metric"]["model"], r["metric"]["version"]) for r in api.query("portfolio_os_model_info")
    }
    assert {("technical", "technical", "1"), ("fundamental", "fundamental", "1"), ("ensemble", "ensemble", "1")} <= info
    ready = {r["metric"]["model"]: r["value"][1] for r in api.query("portfolio_os_model_ready")}
    assert {m: ready.get(m) for m in MODELS} == dict.fromkeys(MODELS, "1"), ready
    circuits = {r["metric"]["model"]: r["value"][1] for r in api.query("portfolio_os_gateway_circuit_state")}
    assert {m: circuits.get(m) for m in MODELS} == dict.fromkeys(MODELS, "0"), circuits
    assert api.target_health() == {job: ["up"] for job in ("gateway", *MODELS)}


def _noisy(api: PrometheusAPI) -> set[tuple[str, str]]:
    watched = EXPECTED_FIRING + EXPECTED_QUIET
    return {(a["labels"]["alertname"], a["state"]) for a in api.alerts() if a["labels"]["alertname"] in watched}


def _check_quiet(api: PrometheusAPI) -> None:
    """No watched alert stays active on the healthy stack.

    Rules are evaluated before the first scrapes land, so with ``for: 1s`` ModelReadyAbsent may fire
    for a moment at Prometheus' start; it must resolve within a few evaluations once scraped.
    """
    try:
        wait_for(lambda: not _noisy(api), 30, "a quiet healthy stack")
    except AssertionError as e:
        raise AssertionError(f"{e}; alerts active on a healthy stack: {_noisy(api)}") from e


def _kill_and_time_alerts(api: PrometheusAPI, victim: Service) -> tuple[float, float, dict[str, float]]:
    """SIGKILL the victim's process group (a crashed pod); when the signal was sent, when the server was
    gone, and the seconds from then to each alert firing."""
    assert victim.process is not None
    kill_sent_at = time.monotonic()
    os.killpg(victim.process.pid, signal.SIGKILL)
    victim.process.wait(timeout=60)
    killed_at = time.monotonic()  # the server is gone: every request sent from now on finds it gone
    latencies: dict[str, float] = {}

    def all_firing() -> bool:
        for name in EXPECTED_FIRING:
            if name not in latencies and api.alert_state(name, model=KILLED) == "firing":
                latencies[name] = time.monotonic() - killed_at
        return len(latencies) == len(EXPECTED_FIRING)

    wait_for(all_firing, ALERT_BUDGET_S, f"{EXPECTED_FIRING} to fire for {KILLED}")
    return kill_sent_at, killed_at, latencies


def _check_after_kill(api: PrometheusAPI) -> None:
    assert api.target_health()[KILLED] == ["down"]
    for name in EXPECTED_QUIET:
        assert api.alert_state(name) is None, f"{name} is {api.alert_state(name)} after killing {KILLED}"
    for name in EXPECTED_FIRING:  # only the killed model's alerts, never the survivors'
        models = {a["labels"].get("model") for a in api.alerts() if a["labels"]["alertname"] == name}
        assert models == {KILLED}, f"{name} active for {models}"


def _new_children(before: set[int]) -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()]


@contextmanager
def _no_orphans() -> Iterator[set[int]]:
    """Yield the pids of this process' children now; fail if a child started inside the block outlives it."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield before
    left = _new_children(before)
    assert left == [], f"orphans: {[(p.pid, p.name()) for p in left]}"


def _check_loopback_only(before: set[int]) -> None:
    """Every socket the stack and Prometheus listen on is bound to 127.0.0.1."""
    listening = {
        (p.pid, c.laddr.ip)
        for p in _new_children(before)
        for c in p.connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert len({pid for pid, _ in listening}) >= len(MODELS) + 2, listening  # servers, gateway, Prometheus
    assert {ip for _, ip in listening} == {"127.0.0.1"}, listening


def test_killed_model_server_fires_its_alerts_in_a_real_prometheus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the servers inherit it: nothing lands in the checkout
    clock = {"start": time.monotonic()}
    tickers = build_feature_repo(tmp_path / "data")
    clock["feature repo"] = time.monotonic()
    database_url = f"sqlite:///{tmp_path / 'gateway.db'}"
    key, tight_key = _keys(database_url)
    services = _services(tmp_path, _registry(tmp_path), database_url)
    clock["registry"] = time.monotonic()
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(with_short_for(load_rules(), "1s")))
    targets = {s.name: [f"127.0.0.1:{s.port}"] for s in services}
    config = scrape_config(targets, [rules_file], scrape_interval="1s", evaluation_interval="1s")
    by_name = {s.name: s for s in services}
    gateway = by_name["gateway"].url
    load = Load(gateway, key, ",".join(tickers))
    with _no_orphans() as earlier_children:
        with running(services, tmp_path / "logs"):
            clock["stack ready"] = time.monotonic()
            with local_prometheus(config, tmp_path / "prometheus", free_port()) as api, load.running():
                clock["prometheus ready"] = time.monotonic()
                _traffic(gateway, key, tight_key, tickers)
                _check_series(api)
                _check_loopback_only(earlier_children)
                _check_quiet(api)
                clock["series and quiet"] = time.monotonic()
                kill_sent_at, killed_at, latencies = _kill_and_time_alerts(api, by_name[KILLED])
                _check_after_kill(api)
                clock["alerts fired"] = time.monotonic()
                wait_for(lambda: sum(a.sent > killed_at for a in load.answers) >= 3, 60, "answers after the kill")
        clock["stopped"] = time.monotonic()
    assert load.errors == [], load.errors
    statuses = sorted({a.status for a in load.answers})
    steps = list(clock.items())
    print(
        "\n"
        + ", ".join(f"{name} {t - prev:.1f}s" for (_, prev), (name, t) in itertools.pairwise(steps))
        + f"; total {steps[-1][1] - steps[0][1]:.1f}s"
        + "\nkill->firing: "
        + ", ".join(f"{n} {v:.1f}s" for n, v in latencies.items())
        + f"\nload answers {len(load.answers)} ({sum(a.sent > killed_at for a in load.answers)} after the kill),"
        f" statuses {statuses}"
    )
    assert statuses == [200], statuses  # degraded answers while technical is down, never a 5xx
    healthy = [a for a in load.answers if a.done < kill_sent_at]
    outage = [a for a in load.answers if a.sent > killed_at]
    assert healthy and all(a.degraded is False and a.technical_present for a in healthy), healthy
    assert outage and all(a.degraded is True and not a.technical_present for a in outage), outage
