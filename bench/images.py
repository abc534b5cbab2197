"""Size, what takes the space, build time and cold start of the built images (`make images`).

    python -m bench.images --breakdown                      # sizes + the biggest packages per image
    python -m bench.images --ready-json build/ready.json    # + the container tests' cold starts
    python -m bench.images --data-dir /path/with/mlflow.db [--models technical,ensemble]

Build times: the last `make images` run's build/images-build.json (per image, the base, the total
and the machine's load average before and after). ``--ready-json``: the file the container tests
write when PORTFOLIO_OS_CONTAINER_TIMINGS names it (tests/test_containers_e2e.py): every chart
workload's seconds from ``docker run`` to the first 200 of its rendered readiness probe, model
servers loading their champions from the in-chart MLflow.

Size: ``docker image inspect``'s size. Cold start: from ``docker run`` (a new container, read-only
root filesystem, a tmpfs /tmp, ``--network host``) to the first 200 of the readiness path the chart
probes, for each model server loading its champion from the registry in ``--data-dir`` (mounted at
the same path, so the artifact locations the registry recorded resolve). Baseline in the same run:
the same server started as a plain process from this machine's venv, so the container's own cost
is the difference. Prints JSON and writes it under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parents[1]
MANIFEST: Final = ROOT / "build" / "images.json"
BUILD_TIMES: Final = ROOT / "build" / "images-build.json"
SITE: Final = "/opt/venv/lib/python3.11/site-packages"
# Inside an image: KiB of the venv, of everything outside it, and of each site-packages entry.
DU: Final = (
    f"du -sk /opt/venv | cut -f1; du -skx --exclude=/opt --exclude=/proc --exclude=/sys / | cut -f1; "
    f"cd {SITE} && du -sk * | sort -rn"
)
TEXT_MODELS: Final = {"sentiment_text"}
READY_TIMEOUT_S: Final = 180.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_ready(url: str, started: float, alive: Any) -> float:
    """Seconds from ``started`` to the first 200 of ``url``; raises if the process dies or times out."""
    while time.monotonic() - started < READY_TIMEOUT_S:
        if not alive():
            raise RuntimeError(f"the server exited before {url} answered 200")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready within {READY_TIMEOUT_S:.0f} s")


def _server_args(model: str, port: int) -> list[str]:
    return ["-m", f"serving.{model}", "--host", "127.0.0.1", "--http_port", str(port), "--reload_seconds", "0"]


def container_start(image: str, model: str, data_dir: Path, container_dir: Path) -> float:
    port = _free_port()
    name = f"bench-images-{model}-{port}"
    cmd = ["docker", "run", "-d", "--rm", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp"]
    cmd += ["-v", f"{data_dir}:{container_dir}", "-e", f"PORTFOLIO_OS_DATA_DIR={container_dir}", image, "python"]
    started = time.monotonic()
    subprocess.run([*cmd, *_server_args(model, port)], check=True, capture_output=True)

    def alive() -> bool:
        out = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}}", name], check=False, capture_output=True, text=True
        )
        return out.stdout.strip() == "true"

    try:
        return _wait_ready(f"http://127.0.0.1:{port}/v2/models/{model}/ready", started, alive)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def process_start(model: str, data_dir: Path) -> float:
    port = _free_port()
    env = {"PORTFOLIO_OS_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, *_server_args(model, port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        return _wait_ready(f"http://127.0.0.1:{port}/v2/models/{model}/ready", started, lambda: proc.poll() is None)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def image_size_mb(image: str) -> float:
    out = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Size}}", image], capture_output=True, text=True, check=True
    )
    return round(int(out.stdout.strip()) / 1e6, 1)


def breakdown(image: str, top: int) -> dict[str, Any]:
    """MB of the venv, of the rest of the filesystem, and of the ``top`` biggest site-packages entries."""
    out = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", DU],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    entries = [line.split("\t", 1) for line in out[2:] if "\t" in line]
    return {
        "venv_mb": round(int(out[0]) / 1024, 1),
        "rest_mb": round(int(out[1]) / 1024, 1),
        "biggest_mb": {name: round(int(kib) / 1024, 1) for kib, name in entries[:top]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="a data folder whose mlflow.db has champions (cold starts)")
    parser.add_argument(
        "--container-data-dir",
        type=Path,
        help="where the registry recorded its artifacts, if not --data-dir (the container mounts it there)",
    )
    parser.add_argument("--models", default="technical,ensemble,sentiment_text")
    parser.add_argument("--breakdown", type=int, nargs="?", const=15, default=0, help="biggest N packages per image")
    parser.add_argument("--ready-json", type=Path, help="cold starts written by the container tests")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    opts = parser.parse_args(argv)
    if not MANIFEST.is_file():
        print("bench.images: no build/images.json: run `make images` first", file=sys.stderr)
        return 2
    manifest: dict[str, str] = json.loads(MANIFEST.read_text())
    result: dict[str, Any] = {
        "images": manifest,
        "sizes_mb": {name: image_size_mb(tag) for name, tag in manifest.items()},
        "load_now": [round(x, 2) for x in os.getloadavg()],
    }
    if opts.breakdown:
        result["breakdown"] = {name: breakdown(tag, opts.breakdown) for name, tag in manifest.items()}
    if BUILD_TIMES.is_file():
        result["last_build"] = json.loads(BUILD_TIMES.read_text())
    if opts.ready_json is not None:
        result["container_cold_start"] = json.loads(opts.ready_json.read_text())
    if opts.data_dir is not None:
        data_dir = opts.data_dir.resolve()
        starts: dict[str, dict[str, float]] = {}
        for model in opts.models.split(","):
            image = manifest["text-model-server" if model in TEXT_MODELS else "model-server"]
            starts[model] = {
                "container_ready_s": round(
                    container_start(image, model, data_dir, opts.container_data_dir or data_dir), 2
                ),
                "baseline_process_ready_s": round(process_start(model, data_dir), 2),
            }
        result["cold_start"] = starts
    text = json.dumps(result, indent=2)
    print(text)
    opts.results_dir.mkdir(parents=True, exist_ok=True)
    (opts.results_dir / "images.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
