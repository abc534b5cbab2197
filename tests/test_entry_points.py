"""One command (``portfolio-os``), the telemetry-off environment, and an SDK import with no side effects.

Commands run as real processes through the installed console script; the registry UI is a real
MLflow server on a real SQLite registry laid out as the main job lays it out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from feature_repo.telemetry import QUIET_PROGRESS, TELEMETRY_OFF, set_defaults, telemetry_off
from portfolio_os.cli import APPS, COMMANDS, STAGES
from tests.servers import free_port, listening_addresses

ROOT = Path(__file__).resolve().parents[1]
PORTFOLIO_OS = Path(sys.executable).parent / "portfolio-os"
APP_PACKAGES = ("training", "serving", "api", "monitoring", "feature_repo")


def portfolio_os(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PORTFOLIO_OS), *args],
        cwd=ROOT,
        env=env or os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def imported_after(statement: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """Run ``statement`` in a fresh interpreter; report the modules it loaded and the environment's change."""
    probe = (
        "import json, os, sys\n"
        "before = dict(os.environ)\n"
        f"{statement}\n"
        "after = dict(os.environ)\n"
        "changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))\n"
        "print(json.dumps({'modules': sorted(sys.modules), 'changed': changed}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return dict(json.loads(out.stdout.splitlines()[-1]))


# --- the client SDK ------------------------------------------------------------------------------


def test_importing_the_client_sdk_changes_nothing_in_the_process(tmp_path: Path) -> None:
    """`import api.client` leaves the environment alone and loads neither Feast nor pandas."""
    env = {k: v for k, v in os.environ.items() if k not in TELEMETRY_OFF}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)  # what the old package import dropped
    seen = imported_after("import api.client", env)
    assert seen["changed"] == []
    modules = {str(m).split(".")[0] for m in seen["modules"]}  # type: ignore[attr-defined]
    assert "api" in modules
    assert not modules & {"feast", "pandas", "mlflow", "torch"}, sorted(modules & {"feast", "pandas"})


def test_the_gateways_entry_point_sets_what_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    from api.__main__ import prepare_process

    for key in TELEMETRY_OFF:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/feast-left-this")
    prepare_process()
    assert {k: os.environ.get(k) for k in TELEMETRY_OFF} == dict(TELEMETRY_OFF)
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_the_gateway_process_runs_without_torch_as_its_image_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """With torch installed (this venv), Feast would import it into the gateway: ~180 MB for nothing."""
    seen = imported_after(
        "from api.__main__ import keep_torch_out, prepare_process\n"
        "prepare_process(); keep_torch_out()\n"
        "import api.app, feast.torch_wrapper as wrapper\n"
        "assert not wrapper.TORCH_AVAILABLE"
    )
    assert not [m for m in seen["modules"] if str(m).startswith("torch.")]  # type: ignore[attr-defined]
    from api.__main__ import keep_torch_out

    loaded = object()
    monkeypatch.setitem(sys.modules, "torch", loaded)
    keep_torch_out()  # a process that already has torch keeps it
    assert sys.modules["torch"] is loaded


# --- Feast's typeguard instrumentation, skipped by every process entry -----------------------------


@pytest.mark.parametrize(
    "entry",
    [
        "import training.__main__",  # python -m training and portfolio-os: its imports load Feast
        "from api.__main__ import prepare_process; prepare_process()",
        "from monitoring.__main__ import _quiet_telemetry; _quiet_telemetry()",
        "from training.environment import quiet_third_parties; quiet_third_parties()",
    ],
)
def test_each_process_entry_skips_typeguards_instrumentation_before_feast_loads(entry: str) -> None:
    """typeguard recompiles every @typechecked Feast class at import: seconds per process (import_costs)."""
    seen = imported_after(
        f"{entry}\n"
        "from feature_repo.import_costs import instrumentation_skipped\n"
        "assert instrumentation_skipped()\n"
        "import feast.feature_view as fv, typeguard\n"
        "assert fv.typechecked is typeguard.typechecked  # Feast bound the skipping decorator\n"
        "from feature_repo.definitions import build_definitions\n"  # the project's repo objects still build
        "assert build_definitions('/tmp/portfolio-os-probe')"
    )
    assert "feast" in {str(m).split(".")[0] for m in seen["modules"]}  # type: ignore[attr-defined]


def test_importing_the_import_costs_module_skips_nothing() -> None:
    seen = imported_after(
        "import feature_repo.import_costs as costs\n"
        "assert not costs.instrumentation_skipped()\n"
        "import typeguard\n"
        "assert costs._typechecked(len) is len and costs._typechecked()(len) is len  # bare and with options\n"
        "assert costs.skip_typeguard_instrumentation() and costs.instrumentation_skipped()"
    )
    assert seen["changed"] == []


# --- telemetry off, defined once -----------------------------------------------------------------


def test_telemetry_module_is_light_and_keeps_values_already_set() -> None:
    seen = imported_after("import feature_repo.telemetry")
    assert seen["changed"] == []  # importing it sets nothing; calling it does
    loaded = {str(m).split(".")[0] for m in seen["modules"]}  # type: ignore[attr-defined]
    assert not loaded & {"pydantic", "pandas", "numpy", "feast", "yaml"}
    environ = {"DO_NOT_TRACK": "0"}
    telemetry_off(environ)
    assert environ == {**TELEMETRY_OFF, "DO_NOT_TRACK": "0"}  # an operator's opt-in wins
    set_defaults(QUIET_PROGRESS, environ)
    assert environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"


def _training() -> None:
    from training.environment import quiet_third_parties

    quiet_third_parties()


def _serving() -> None:
    from serving.settings import apply_process_defaults

    apply_process_defaults()


def _monitoring() -> None:
    from monitoring.__main__ import _quiet_telemetry

    _quiet_telemetry()


def _gateway() -> None:
    from api.__main__ import prepare_process

    prepare_process()


@pytest.mark.parametrize("apply", [_training, _serving, _monitoring, _gateway], ids=lambda f: f.__name__[1:])
def test_every_entry_point_turns_the_same_telemetry_off(apply, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    for key in TELEMETRY_OFF:
        monkeypatch.delenv(key, raising=False)
    apply()
    assert {k: os.environ.get(k) for k in TELEMETRY_OFF} == dict(TELEMETRY_OFF)


# --- one command ---------------------------------------------------------------------------------


def test_the_dispatcher_imports_no_app() -> None:
    """portfolio_os names entry-point modules; loading it (and its help) loads none of the packages."""
    seen = imported_after("import portfolio_os.cli as c; c.usage()")
    loaded = {str(m).split(".")[0] for m in seen["modules"]}  # type: ignore[attr-defined]
    assert not loaded & set(APP_PACKAGES), sorted(loaded & set(APP_PACKAGES))


def test_help_lists_every_command_and_unknown_commands_are_refused() -> None:
    shown = portfolio_os("--help")
    assert shown.returncode == 0
    for name in ["demo", "run", *STAGES, *APPS]:
        assert name in shown.stdout, name
    bare = portfolio_os()
    assert bare.returncode == 2 and "usage: portfolio-os" in bare.stderr
    wrong = portfolio_os("nope")
    assert wrong.returncode == 2 and "unknown command 'nope'" in wrong.stderr and "registry-ui" in wrong.stderr


def test_the_pipeline_commands_are_the_pipelines_stages() -> None:
    from training.pipeline import STAGES as PIPELINE_STAGES

    assert tuple(PIPELINE_STAGES) == STAGES
    assert all(COMMANDS[s].module == "training" for s in ["demo", "run", *STAGES])


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["serve", "--help"], "python -m serving.launcher"),
        (["gateway", "--help"], "python -m api"),
        (["monitor", "--help"], "briefing-facts"),
        (["keys", "--help"], "python -m api.keys"),
        (["model-server", "technical", "--help"], "--http_port"),
        (["registry-ui", "--help"], "--port"),
    ],
)
def test_each_command_runs_its_apps_entry_point(command: list[str], expected: str) -> None:
    """The rest of the command line reaches the app's own parser (its --help), exit 0."""
    done = portfolio_os(*command)
    assert done.returncode == 0, done.stderr[-2000:]
    assert expected in done.stdout


def test_a_commands_failure_is_its_exit_status(tmp_path: Path) -> None:
    unknown = portfolio_os("model-server", "nonesuch")
    assert unknown.returncode == 2 and "unknown model server 'nonesuch'" in unknown.stderr
    bad = portfolio_os("monitor", "--data-dir", str(tmp_path), "decay")
    assert bad.returncode == 2 and "does not exist" in bad.stderr  # monitoring's own error, exit 2


@pytest.mark.slow
def test_a_pipeline_command_reaches_the_training_cli(tmp_path: Path) -> None:
    done = portfolio_os("health", "--config", str(tmp_path / "missing.yaml"), "--data-dir", str(tmp_path))
    assert done.returncode == 2 and "cannot read run configuration" in done.stderr, done.stderr[-2000:]


def test_the_model_server_form_by_name_starts_the_named_server() -> None:
    """`python -m serving NAME` parses the named server's options (its help names it)."""
    done = subprocess.run(
        [sys.executable, "-m", "serving", "ensemble", "--help"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "ensemble" in done.stdout


# --- registry-ui ---------------------------------------------------------------------------------


def test_registry_ui_says_what_to_do_without_a_registry(tmp_path: Path) -> None:
    done = portfolio_os("registry-ui", "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert f"no registry at {tmp_path / 'mlflow.db'}" in done.stderr and "make demo" in done.stderr
    assert not (tmp_path / "mlflow.db").exists()  # asking MLflow would have created an empty one
    remote = tmp_path / "remote.yaml"
    remote.write_text("registry:\n  tracking_uri: http://127.0.0.1:5000\n")
    done = portfolio_os("registry-ui", "--config", str(remote))
    assert done.returncode == 2 and "has its own UI" in done.stderr


@pytest.fixture
def demo_registry(tmp_path: Path) -> Iterator[Path]:
    """A data folder holding a real registry as the main job writes it: data/mlflow.db, a champion, a card."""
    from tests.serving_fixtures import Registry, mlflow_uris_restored, train_booster

    data = tmp_path / "data"
    with mlflow_uris_restored():
        registry = Registry.create(data, tmp_path)
        version = registry.register_signal(
            "technical", train_booster(["f1", "f2"]), feature_service="technical_model_v1"
        )
        run_id = registry.client.get_model_version("technical", version).run_id
        assert run_id is not None
        registry.client.log_text(run_id, "# Model card: technical\n", "model_card.md")
    yield data


@pytest.mark.slow
def test_registry_ui_serves_the_demo_registry_on_loopback(demo_registry: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [str(PORTFOLIO_OS), "registry-ui", "--port", str(port)],
        cwd=ROOT,
        env=os.environ | {"PORTFOLIO_OS_DATA_DIR": str(demo_registry)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert f"open http://127.0.0.1:{port}/" in proc.stdout.readline() + proc.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "the UI exited"
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the UI did not answer in 120 s"
            time.sleep(0.5)
        assert "<html" in httpx.get(base + "/", timeout=10).text.lower()
        models = httpx.get(base + "/ajax-api/2.0/mlflow/registered-models/search", timeout=10).json()
        aliases = {m["name"]: [a["alias"] for a in m.get("aliases", [])] for m in models["registered_models"]}
        assert aliases == {"technical": ["champion"]}
        version = httpx.get(
            base + "/ajax-api/2.0/mlflow/model-versions/get", params={"name": "technical", "version": "1"}, timeout=10
        ).json()["model_version"]
        card = httpx.get(
            base + "/get-artifact", params={"path": "model_card.md", "run_uuid": version["run_id"]}, timeout=10
        )
        assert card.status_code == 200 and card.text.startswith("# Model card: technical")
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_the_monitoring_cli_docstring_names_every_subcommand() -> None:
    import monitoring.__main__ as monitoring_cli

    parser = monitoring_cli.build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    assert subcommands is not None and set(subcommands) == set(monitoring_cli.HANDLERS)
    doc = monitoring_cli.__doc__ or ""
    assert [name for name in subcommands if f"``{name}``" not in doc] == []
