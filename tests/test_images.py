"""The image build (scripts/images.py, scripts/index_proxy.py, docker/requirements.py) and the built images.

The first part needs no Docker. The second inspects the images `make images` built (build/images.json):
what each one carries, and that nothing of the build machine's pip configuration stayed inside.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import pytest

from tests.chart_tools import CHART, pod_specs, rendered_objects
from tests.image_build import wait_for_images

# Under make test these run after the other tests, once the background image build is done.
pytestmark = pytest.mark.images

ROOT: Final = Path(__file__).resolve().parents[1]
MANIFEST: Final = ROOT / "build" / "images.json"
IMAGES: Final = ("gateway", "model-server", "text-model-server", "training")


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sys.path.insert(0, str(ROOT / "scripts"))
images = _load("images", ROOT / "scripts" / "images.py")
index_proxy = _load("index_proxy", ROOT / "scripts" / "index_proxy.py")
image_builder = _load("image_builder", ROOT / "scripts" / "image_builder.py")


# --- docker/requirements.py ---------------------------------------------------------------------


def test_requirements_expand_the_project_extras(tmp_path: Path) -> None:
    """One file per extra: the core dependencies plus every `portfolio-os[...]` group it names."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "portfolio-os"\ndependencies = ["numpy>=2"]\n'
        "[project.optional-dependencies]\n"
        'features = ["feast==0.67.0"]\n'
        'serving = ["portfolio-os[features]", "kserve==0.21.0"]\n'
        'text = ["portfolio-os[serving]", "torch==2.13.0"]\n'
    )
    subprocess.run(
        [sys.executable, ROOT / "docker" / "requirements.py", tmp_path / "pyproject.toml", tmp_path / "reqs"],
        check=True,
    )
    text = (tmp_path / "reqs" / "text.txt").read_text().split()
    assert text == ["numpy>=2", "feast==0.67.0", "kserve==0.21.0", "torch==2.13.0"]
    assert (tmp_path / "reqs" / "features.txt").read_text().split() == ["numpy>=2", "feast==0.67.0"]


def test_requirements_name_a_missing_extra(tmp_path: Path) -> None:
    """A group that includes an extra which does not exist fails, naming it."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "portfolio-os"\n[project.optional-dependencies]\nserving = ["portfolio-os[nope]"]\n'
    )
    result = subprocess.run(
        [sys.executable, ROOT / "docker" / "requirements.py", tmp_path / "pyproject.toml", tmp_path / "reqs"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0 and "no extra 'nope'" in result.stderr


# --- scripts/images.py: digests and index settings ----------------------------------------------


def _tree(root: Path) -> Path:
    (root / "docker").mkdir(parents=True)
    (root / "pkg").mkdir()
    (root / "pkg" / "a.py").write_text("A = 1\n")
    (root / "other.txt").write_text("not copied\n")
    dockerfile = root / "docker" / "x.Dockerfile"
    dockerfile.write_text("FROM b AS s\nCOPY pkg /src/pkg\nCOPY --from=s /x /y\n")
    return dockerfile


def test_input_digest_follows_what_the_dockerfile_copies(tmp_path: Path) -> None:
    """The tag changes with a copied file, the Dockerfile or the base; not with a file it never copies."""
    dockerfile = _tree(tmp_path)
    first = images.input_digest(dockerfile, "sha256:base", tmp_path)
    (tmp_path / "other.txt").write_text("changed\n")
    assert images.input_digest(dockerfile, "sha256:base", tmp_path) == first
    assert images.input_digest(dockerfile, "sha256:other-base", tmp_path) != first
    (tmp_path / "pkg" / "a.py").write_text("A = 2\n")
    second = images.input_digest(dockerfile, "sha256:base", tmp_path)
    assert second != first
    dockerfile.write_text(dockerfile.read_text() + "USER 10001\n")
    assert images.input_digest(dockerfile, "sha256:base", tmp_path) != second


def test_input_digest_names_a_missing_source(tmp_path: Path) -> None:
    dockerfile = _tree(tmp_path)
    dockerfile.write_text("FROM b\nCOPY missing /src/missing\n")
    with pytest.raises(SystemExit, match="copies missing, which does not exist"):
        images.input_digest(dockerfile, "sha256:base", tmp_path)


def test_step_seconds_say_where_a_build_spent_its_time() -> None:
    """From each step's start to the next one's (the last to the build's end); steps under a second left out."""
    steps = [(0.0, "1: FROM base"), (0.4, "2: RUN pip install"), (130.9, "3: COPY api"), (131.2, "4: CMD")]
    assert image_builder.step_seconds(steps, end=140.0) == [
        {"step": "2: RUN pip install", "seconds": 130.5},
        {"step": "4: CMD", "seconds": 8.8},
    ]
    assert image_builder.step_seconds([], end=3.0) == []


def test_buildkit_builds_every_image_at_once_and_legacy_in_two_lanes() -> None:
    wanted = list(IMAGES)
    assert images.build_stages(wanted, buildkit=True) == [[[name] for name in IMAGES]]
    assert images.build_stages(wanted) == [[["gateway"], ["model-server", "text-model-server", "training"]]]
    assert images.build_stages(wanted, serial=True, buildkit=True) == [[wanted]]


def test_step_clock_reads_the_legacy_builder_output() -> None:
    clock = image_builder.StepClock("legacy")
    for at, line in [(0.0, "Step 1/3 : FROM base"), (0.5, "Step 2/3 : RUN pip install x"), (40.5, " ---> abc")]:
        clock.read(at, line)
    clock.read(41.0, 'Step 3/3 : CMD ["x"]')
    assert clock.steps(end=41.2) == [{"step": "2: RUN pip install x", "seconds": 40.5}]


def test_step_clock_times_buildkit_steps_by_their_own_done_lines() -> None:
    """BuildKit interleaves the steps of independent stages: each is timed by its DONE line, not by order."""
    clock = image_builder.StepClock("buildkit")
    lines = [
        "#5 [deps 2/4] RUN python3 -m venv /opt/venv",
        "#6 [requirements 2/2] RUN python3 /src/requirements.py",
        "#6 DONE 0.4s",
        "#5 DONE 3.2s",
        "#8 [deps 4/4] RUN pip install -r serving.txt",
        "#8 0.512 Collecting numpy",
        "#9 [runtime 2/5] COPY feature_repo /x",
        "#9 CACHED",
        "#8 DONE 120.0s",
        "#12 exporting to image",
        "#12 DONE 9.5s",
    ]
    for at, line in enumerate(lines):
        clock.read(float(at), line + "\n")
    assert clock.steps(end=99.0) == [
        {"step": "5: [deps 2/4] RUN python3 -m venv /opt/venv", "seconds": 3.2},
        {"step": "8: [deps 4/4] RUN pip install -r serving.txt", "seconds": 120.0},
        {"step": "12: exporting to image", "seconds": 9.5},
    ]


def test_builder_choice_can_be_forced_and_names_a_wrong_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(image_builder.BUILDER_ENV, "legacy")
    legacy = image_builder.find_builder()
    assert legacy.kind == "legacy" and legacy.environment()["DOCKER_BUILDKIT"] == "0"
    assert "--progress=plain" not in legacy.command()
    monkeypatch.setenv(image_builder.BUILDER_ENV, "kaniko")
    with pytest.raises(SystemExit, match="PORTFOLIO_OS_BUILDER='kaniko'"):
        image_builder.find_builder()


def test_build_index_rewrites_every_index_to_the_proxy_host() -> None:
    """file:// and https indexes become stable proxy URLs (no port: the dependency layers stay cached)."""
    index = images.build_index(
        {
            "index-url": ["https://pypi.org/simple"],
            "extra-index-url": ["file:///opt/pypi/simple"],
            "find-links": ["/opt/wheels"],
            "cert": ["/etc/ssl/certs/ca-certificates.crt"],
        }
    )
    host = index_proxy.INDEX_HOST
    assert index.args == {
        "PIP_INDEX_URL": f"http://{host}/https/pypi.org/simple/",
        "PIP_EXTRA_INDEX_URL": f"http://{host}/opt/pypi/simple/",
        "PIP_FIND_LINKS": f"http://{host}/opt/wheels/",
        "PIP_TRUSTED_HOST": host,
    }
    assert index.roots == [Path("/opt/pypi"), Path("/opt/wheels")]
    assert index.hosts == {"pypi.org", "files.pythonhosted.org"}
    assert index.cafile == "/etc/ssl/certs/ca-certificates.crt"


# --- scripts/index_proxy.py ---------------------------------------------------------------------


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[urllib.request.OpenerDirector, Path]]:
    served = tmp_path / "served"
    (served / "simple" / "demo").mkdir(parents=True)
    (served / "simple" / "demo" / "index.html").write_text('<a href="../../files/demo-1.0.whl">demo</a>')
    (served / "files").mkdir()
    (served / "files" / "demo-1.0.whl").write_bytes(b"wheel bytes")
    (tmp_path / "secret.txt").write_text("outside the served folder")
    with index_proxy.IndexProxy([served]) as running:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": running.url}))
        yield opener, served


def test_proxy_serves_index_pages_files_and_listings(proxy: tuple[urllib.request.OpenerDirector, Path]) -> None:
    opener, served = proxy
    base = f"http://{index_proxy.INDEX_HOST}{served}"
    assert b"../../files/demo-1.0.whl" in opener.open(f"{base}/simple/demo/", timeout=10).read()
    assert opener.open(f"{base}/files/demo-1.0.whl", timeout=10).read() == b"wheel bytes"
    assert b'href="demo-1.0.whl"' in opener.open(f"{base}/files/", timeout=10).read()  # find-links listing


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://example.com/", 403),  # not an open proxy
        (f"http://{index_proxy.INDEX_HOST}/etc/passwd", 403),  # nothing outside the served folders
        (f"http://{index_proxy.INDEX_HOST}/https/example.com/simple/", 403),  # only the configured hosts
    ],
)
def test_proxy_refuses_what_it_was_not_given(
    proxy: tuple[urllib.request.OpenerDirector, Path], url: str, code: int
) -> None:
    opener, _ = proxy
    with pytest.raises(urllib.error.HTTPError) as raised:
        opener.open(url, timeout=10)
    assert raised.value.code == code


def test_images_without_an_engine_says_how_to_get_one(tmp_path: Path) -> None:
    """No Docker engine: exit 2 and one line naming scripts/docker_engine.sh."""
    env = {**os.environ, "PATH": str(tmp_path), "DOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    result = subprocess.run(
        [sys.executable, ROOT / "scripts" / "images.py"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "scripts/docker_engine.sh" in result.stderr


# --- the chart names the right image per workload -------------------------------------------------


def _rendered_images(values: Path | None) -> dict[str, set[str]]:
    """Workload (kind/name less the release prefix) -> the image repositories its pods run."""
    found: dict[str, set[str]] = {}
    for obj in rendered_objects(values):
        name = f"{obj['kind']}/{obj['metadata']['name'].removeprefix('pos-portfolio-os-')}"
        for _, spec in pod_specs(obj):
            for container in spec.get("containers", []):
                found.setdefault(name, set()).add(container["image"].rsplit(":", 1)[0].rsplit("/", 1)[-1])
    return found


EXPECTED_IMAGES: Final = {
    "Deployment/gateway": {"gateway"},
    "Deployment/feature-server": {"gateway"},
    "Deployment/mlflow": {"training"},
    "InferenceService/technical": {"model-server"},
    "InferenceService/fundamental": {"model-server"},
    "InferenceService/sentiment-signal": {"model-server"},
    "InferenceService/ensemble": {"model-server"},
    "InferenceService/allocator": {"model-server"},
    "InferenceService/sentiment-text": {"text-model-server"},
    "CronJob/materialize": {"training"},
}


def test_chart_names_the_lean_image_of_each_workload() -> None:
    """Every workload runs the image of its job, with the default and the dev values; jobs run `training`."""
    found = _rendered_images(None) | _rendered_images(CHART / "ci" / "dev-values.yaml")
    for workload, repositories in EXPECTED_IMAGES.items():
        assert found.get(workload) == repositories, f"{workload} runs {found.get(workload)}, not {repositories}"
    jobs = {k: v for k, v in found.items() if k.startswith(("CronJob/", "RayJob/"))}
    assert jobs and all(v == {"training"} for v in jobs.values()), jobs


# --- the built images -----------------------------------------------------------------------------


def _image(name: str) -> str:
    """The tag `make images` built for ``name`` (skips when nothing was built here)."""
    wait_for_images()
    if not MANIFEST.is_file() or shutil.which("docker") is None:
        pytest.skip("no built images: run `make images` (build/images.json)")
    manifest: dict[str, str] = json.loads(MANIFEST.read_text())
    assert name in manifest, f"build/images.json has no {name}: run `make images`"
    return manifest[name]


def _docker(*args: str) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, f"docker {' '.join(args[:4])} failed:\n{result.stderr[-2000:]}"
    return result.stdout


def _python(image: str, code: str) -> Any:
    """Run ``python -c code`` in the image (its own user, no network) and parse the JSON it prints."""
    # A tmpfs /tmp, as the chart mounts an emptyDir there (some libraries need a temporary directory).
    out = _docker(
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--entrypoint",
        "python",
        image,
        "-c",
        code,
    )
    return json.loads(out.strip().splitlines()[-1])


PROBE: Final = """
import importlib.util, json, os, shutil, sys
mods = ["torch", "ray", "lightgbm", "mlflow", "kserve", "transformers", "onnxruntime", "feast", "fastapi", "api",
        "serving", "training", "duckdb", "ibis", "dask"]
confs = ["/etc/pip.conf", "/etc/xdg/pip/pip.conf", "/root/.pip/pip.conf", "/root/.config/pip/pip.conf",
         os.path.expanduser("~/.config/pip/pip.conf"), os.path.expanduser("~/.pip/pip.conf"), "/opt/venv/pip.conf"]
print(json.dumps({
    "present": sorted(m for m in mods if importlib.util.find_spec(m) is not None),
    "pip_conf": [c for c in confs if os.path.exists(c)],
    "pip_env": sorted(k for k in os.environ if k.startswith("PIP_")),
    "python": shutil.which("python"), "executable": sys.executable, "version": sys.version_info[:2],
    "uid": os.getuid(), "pip": importlib.util.find_spec("pip") is not None,
}))
"""
CARRIES: Final = {
    "gateway": {"feast", "fastapi", "api"},
    "model-server": {"lightgbm", "mlflow", "kserve", "serving"},
    "text-model-server": {"torch", "transformers", "onnxruntime", "kserve", "mlflow", "serving"},
    "training": {"torch", "ray", "lightgbm", "mlflow", "transformers", "feast", "training", "serving", "kserve"},
}
ABSENT: Final = {
    "gateway": {
        *("torch", "ray", "lightgbm", "mlflow", "kserve", "transformers", "onnxruntime", "serving", "training"),
        *("duckdb", "ibis", "dask"),  # Feast is opened online-only (feature_repo/online_only.py)
    },
    "model-server": {"torch", "ray", "transformers", "api", "training", "feast", "duckdb"},
    "text-model-server": {"ray", "api", "training"},
    "training": {"api"},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", IMAGES)
def test_image_carries_its_job_and_nothing_of_the_build(name: str) -> None:
    """From inside: the right libraries (the gateway: no torch/Ray/LightGBM/MLflow/KServe), the venv's
    python, a non-root user, and no pip configuration, PIP_* variable or pip itself."""
    image = _image(name)
    seen = _python(image, PROBE)
    assert CARRIES[name] <= set(seen["present"]), f"{name} lacks {CARRIES[name] - set(seen['present'])}"
    assert not ABSENT[name] & set(seen["present"]), f"{name} carries {ABSENT[name] & set(seen['present'])}"
    assert seen["python"] == "/opt/venv/bin/python" and seen["executable"].startswith("/opt/venv/")
    assert seen["version"] == [3, 11] and seen["uid"] == 10001
    assert seen["pip_conf"] == [] and seen["pip_env"] == [] and seen["pip"] is False


# What each image's processes import, imported for real (native libraries loaded): a slimming step
# that breaks a shared library (strip on a patchelf'd one), or a dependency no extra declares
# (serving.server's SQLAlchemy), fails here, not in a pod. serving.server is what every predictor's
# main() imports.
IMPORTS: Final = {
    "gateway": ["numpy", "pandas", "pyarrow.compute", "sqlalchemy", "uvloop", "api.app", "feature_repo.serve"],
    "model-server": ["numpy", "scipy.sparse", "pandas", "lightgbm", "kserve", "mlflow.pyfunc", "serving.server"],
    "text-model-server": ["torch", "transformers", "onnxruntime", "kserve", "mlflow.pyfunc", "serving.server"],
    "training": [
        "torch",
        "ray",
        "ray.dashboard.modules.job.job_head",  # the Job Submission API the chart's RayCluster serves backtests on
        "lightgbm",
        "mlflow",
        "duckdb",
        "feast",
        "training.__main__",
        "serving.technical",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", IMAGES)
def test_image_imports_what_it_runs(name: str) -> None:
    """Every library the image's commands need imports inside it (read-only, its own user, no network)."""
    code = "import importlib, json; [importlib.import_module(m) for m in {mods!r}]; print(json.dumps('ok'))"
    assert _python(_image(name), code.format(mods=IMPORTS[name])) == "ok"


@pytest.mark.slow
@pytest.mark.parametrize("name", IMAGES)
def test_image_metadata_keeps_no_index_settings(name: str) -> None:
    """docker inspect/history: no PIP_* variable, no proxy and no index address recorded anywhere."""
    image = _image(name)
    config = json.loads(_docker("inspect", image))[0]["Config"]
    assert not [e for e in config["Env"] or [] if e.startswith(("PIP_", "HTTP_PROXY", "http_proxy"))]
    history = _docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image)
    for leak in (index_proxy.INDEX_HOST, "PIP_", "HTTP_PROXY", "http_proxy", "/opt/pypi", "/opt/wheels"):
        assert leak not in history, f"{leak} in the history of {image}"


@pytest.mark.slow
def test_gateway_system_has_no_package_tools_and_keeps_time_zones() -> None:
    """The gateway's slimmed system (docker/slim_system.sh): no apt, dpkg or perl, and time zones still
    resolve (from the tzdata package pandas requires: the system's zone files are gone)."""
    code = (
        "import datetime as dt, json, shutil, zoneinfo; z = zoneinfo.ZoneInfo('America/New_York'); "
        "print(json.dumps({'tools': [t for t in ('apt-get', 'dpkg', 'perl') if shutil.which(t)], "
        "'offset_h': dt.datetime(2024, 1, 15, tzinfo=z).utcoffset().total_seconds() / 3600}))"
    )
    assert _python(_image("gateway"), code) == {"tools": [], "offset_h": -5.0}
