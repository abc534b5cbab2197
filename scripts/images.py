"""Build the four Portfolio OS images, each tagged with a digest of its inputs (``make images``).

    python scripts/images.py                       # base (no registry) + all four images
    python scripts/images.py --only gateway        # one image
    python scripts/images.py --base python:3.11.14-slim-bookworm   # with registry access
    python scripts/images.py --only gateway --cold --repository scratch --manifest /tmp/m.json
                                                   # measure a cold build (no layer cache used)

Each image's tag is a digest of everything that decides its content: the Dockerfile, every file
and folder it COPYs from the build context, and the base image's id. A tag that already exists
is not rebuilt. The pip indexes this machine is configured with (``pip config list``) reach the
build through scripts/index_proxy.py; nothing of them is written into an image. The proxy keeps
every file it downloads from a remote index in ``--wheel-cache`` (~/.cache/portfolio-os/wheels), so a
file crosses the network once for all the images and for every later cold build. The manifest
(``build/images.json``, ``{"gateway": "portfolio-os/gateway:<digest>", ...}``) is what the
container tests and docs/deploy.md read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_builder import Builder, StepClock, find_builder
from index_proxy import INDEX_HOST, IndexProxy, proxied

ROOT = Path(__file__).resolve().parent.parent
# Build order matters for time: each image's dependency layers extend the previous one's.
IMAGES = ("gateway", "model-server", "text-model-server", "training")
NO_ENGINE = (
    "make images needs a Docker engine: run scripts/docker_engine.sh as root (installs Debian's docker.io and "
    "starts dockerd), or point DOCKER_HOST at a running engine"
)
_SKIP_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
_COPY = re.compile(r"^\s*(?:COPY|ADD)\s+(?P<args>.+)$", re.IGNORECASE)


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=False, text=True, capture_output=True)


def copied_sources(dockerfile: Path) -> list[str]:
    """The build-context paths a Dockerfile COPYs (COPY --from=stage lines copy from a stage)."""
    sources: list[str] = []
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        match = _COPY.match(line)
        if not match:
            continue
        words = shlex.split(match["args"])
        if any(w.startswith("--from") for w in words):
            continue
        sources += [w for w in words if not w.startswith("--")][:-1]
    return sorted(set(sources))


def _files(path: Path, root: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise SystemExit(f"images.py: a Dockerfile copies {path.relative_to(root)}, which does not exist")
    return sorted(p for p in path.rglob("*") if p.is_file() and not _SKIP_PARTS & set(p.parts) and p.suffix != ".pyc")


def input_digest(dockerfile: Path, base_id: str, root: Path = ROOT) -> str:
    """sha256 (first 16 hex digits) of the Dockerfile, the files it copies and the base image id."""
    digest = hashlib.sha256(f"base {base_id}\n".encode())
    for rel in [str(dockerfile.relative_to(root)), *copied_sources(dockerfile)]:
        for f in _files(root / rel, root):
            digest.update(f"{f.relative_to(root)}\n".encode())
            digest.update(hashlib.sha256(f.read_bytes()).digest())
    return digest.hexdigest()[:16]


PYPI = "https://pypi.org/simple"
# An index page on PyPI links its files on this host.
PYPI_FILES = "files.pythonhosted.org"
_PIP_KEYS = {"index-url", "extra-index-url", "find-links", "trusted-host", "cert"}


def pip_settings() -> dict[str, list[str]]:
    """index-url, extra-index-url, find-links, trusted-host and cert from ``pip config list`` (env wins)."""
    out = _run([sys.executable, "-m", "pip", "config", "list"]).stdout
    found: dict[str, dict[str, list[str]]] = {}
    for line in out.splitlines():
        match = re.match(r"^(?P<scope>[^.]*)\.(?P<key>[a-z-]+)='(?P<value>.*)'$", line.strip())
        if match and match["key"] in _PIP_KEYS:
            found.setdefault(match["key"], {})[match["scope"]] = match["value"].split()
    settings = {key: scopes.get(":env:", next(iter(scopes.values()))) for key, scopes in found.items()}
    settings.setdefault("index-url", [PYPI])
    return settings


def _local_path(url: str) -> Path | None:
    if url.startswith("file://"):
        return Path(url.removeprefix("file://"))
    return Path(url) if url.startswith("/") else None


@dataclass
class BuildIndex:
    """What a build needs to reach this machine's pip indexes through the proxy."""

    args: dict[str, str] = field(default_factory=dict)  # PIP_* build arguments (stable across builds)
    roots: list[Path] = field(default_factory=list)  # local folders the proxy serves
    hosts: set[str] = field(default_factory=set)  # https hosts the proxy fetches from
    cafile: str | None = None  # pip's cert setting, to verify those hosts


def build_index(settings: dict[str, list[str]]) -> BuildIndex:
    """PIP_* build arguments with every index rewritten to the proxy host, and what the proxy serves."""
    certs = settings.get("cert", [])
    index = BuildIndex(cafile=certs[0] if certs else None)
    for key in ("index-url", "extra-index-url", "find-links"):
        urls = []
        for value in settings.get(key, []):
            local = _local_path(value)
            if local is not None:
                # A PEP 503 index's pages link to ../../files: serve the folder above "simple" too.
                index.roots.append(local.parent if local.name == "simple" else local)
                urls.append(f"http://{INDEX_HOST}{local}/")
            elif value.startswith("https://"):
                host = value.removeprefix("https://").split("/", 1)[0]
                index.hosts |= {host, PYPI_FILES} if host == "pypi.org" else {host}
                urls.append(proxied(value.rstrip("/") + "/"))
            else:
                urls.append(value)
        if urls:
            index.args["PIP_" + key.upper().replace("-", "_")] = " ".join(urls)
    index.args["PIP_TRUSTED_HOST"] = " ".join([*settings.get("trusted-host", []), INDEX_HOST])
    return index


def default_wheel_cache() -> Path:
    """~/.cache/portfolio-os/wheels (under $XDG_CACHE_HOME when set)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "portfolio-os" / "wheels"


def engine_ok() -> bool:
    try:
        return _run(["docker", "info"]).returncode == 0
    except FileNotFoundError:
        return False


def image_id(tag: str) -> str | None:
    result = _run(["docker", "image", "inspect", "--format", "{{.Id}}", tag])
    return result.stdout.strip() if result.returncode == 0 else None


def base_image(choice: str) -> str:
    """``local``: scripts/base_image.sh's registry-free image; anything else: that image (pulled if missing)."""
    if choice != "local":
        if image_id(choice) is None and subprocess.run(["docker", "pull", choice], check=False).returncode:
            raise SystemExit(f"images.py: cannot pull --base {choice}; use --base local (no registry needed)")
        return choice
    result = subprocess.run([str(ROOT / "scripts" / "base_image.sh")], check=False, text=True, stdout=subprocess.PIPE)
    if result.returncode:
        raise SystemExit("images.py: scripts/base_image.sh failed (see above)")
    return result.stdout.strip().splitlines()[-1]


def build(name: str, tag: str, *, plan: Plan, log: Path) -> list[dict[str, object]]:
    """docker build with host networking (the proxy listens on 127.0.0.1); the log tail on failure.

    Returns the Dockerfile steps that took a second or more (the log prefixes every line with the
    seconds since the build started): where a cold build's time goes.
    """
    cmd = [*plan.builder.command(), "--network", "host", "-f", f"docker/{name}.Dockerfile", "-t", tag]
    if plan.cold:
        cmd.append("--no-cache")
    for key, value in {
        "BASE_IMAGE": plan.base,
        **plan.index.args,
        "HTTP_PROXY": plan.proxy,
        "http_proxy": plan.proxy,
    }.items():
        cmd += ["--build-arg", f"{key}={value}"]
    clock = StepClock(plan.builder.kind)
    started = time.monotonic()
    with (
        log.open("w", buffering=1) as out,  # line by line: the log can be followed
        subprocess.Popen(
            [*cmd, "."],
            cwd=ROOT,
            env=plan.builder.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            at = time.monotonic() - started
            out.write(f"[{at:7.1f}s] {line}")
            clock.read(at, line)
    if proc.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise SystemExit(f"images.py: building {name} failed (full log: {log}):\n{tail}")
    return clock.steps(time.monotonic() - started)


@dataclass
class Plan:
    """What every build of one ``images.py`` run shares."""

    base: str
    base_id: str
    index: BuildIndex
    proxy: str
    repository: str
    manifest: Path
    rebuild: bool
    builder: Builder  # find_builder()'s choice: BuildKit or legacy, and the client that runs it
    keep_old: bool = False
    cold: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def remove_older_tags(tag: str) -> list[str]:
    """Untag the other tags of ``tag``'s repository (older builds), so disk use stays bounded.

    An image a container still uses, or whose layers a newer one shares, keeps its layers.
    """
    repository = tag.rsplit(":", 1)[0]
    listed = _run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository]).stdout.split()
    older = [t for t in listed if t != tag and not t.endswith(":<none>")]
    if older:
        _run(["docker", "image", "rm", *older])
    return older


def build_lane(names: list[str], plan: Plan) -> dict[str, dict[str, object]]:
    """Build ``names`` in order (each extends the previous one's cached layers); record each tag."""
    report: dict[str, dict[str, object]] = {}
    for name in names:
        tag = f"{plan.repository}/{name}:{input_digest(ROOT / 'docker' / f'{name}.Dockerfile', plan.base_id)}"
        started = time.monotonic()
        built = plan.rebuild or plan.cold or image_id(tag) is None
        steps: list[dict[str, object]] = []
        if built:
            log = plan.manifest.parent / f"build-{name}.log"
            steps = build(name, tag, plan=plan, log=log)
        if not plan.keep_old:
            remove_older_tags(tag)
        report[name] = {"tag": tag, "built": built, "seconds": round(time.monotonic() - started, 1), "steps": steps}
        with plan.lock:
            manifest = json.loads(plan.manifest.read_text()) if plan.manifest.exists() else {}
            manifest[name] = tag
            plan.manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return report


def build_stages(wanted: list[str], *, serial: bool = False, buildkit: bool = False) -> list[list[list[str]]]:
    """Stages of lanes: the lanes of a stage build side by side, each lane in order, stage after stage.

    BuildKit computes a step that builds running at once share only once (the model server's
    `serving` layer, which the text model server and the jobs image extend), so every image gets a
    lane of its own. The legacy builder reuses a layer only once it is committed: the text model
    server and the jobs image build after the model server in one lane, the gateway (which shares
    none of them) beside it.
    """
    if serial:
        return [[wanted]]
    if buildkit:
        return [[[name] for name in wanted]]
    lanes = [[n for n in wanted if n == "gateway"], [n for n in wanted if n != "gateway"]]
    return [[lane for lane in lanes if lane]]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=IMAGES, action="append", help="build only these (repeatable)")
    parser.add_argument("--base", default="local", help="base image, or 'local' (scripts/base_image.sh; default)")
    parser.add_argument("--repository", default="portfolio-os", help="image name prefix (default portfolio-os)")
    parser.add_argument("--manifest", type=Path, default=ROOT / "build" / "images.json")
    parser.add_argument("--rebuild", action="store_true", help="build even when the tag exists")
    parser.add_argument("--keep-old", action="store_true", help="keep the older tags of each image")
    parser.add_argument(
        "--serial",
        action="store_true",
        help="one build at a time (default: all at once with BuildKit; legacy: gateway alongside the rest)",
    )
    parser.add_argument(
        "--cold", action="store_true", help="build every layer anew (docker build --no-cache): to measure a cold build"
    )
    parser.add_argument(
        "--wheel-cache",
        type=Path,
        default=default_wheel_cache(),
        help="where the proxy keeps the files it downloads from remote indexes (default %(default)s)",
    )
    parser.add_argument("--no-wheel-cache", action="store_true", help="download every remote file in every build")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if not engine_ok():
        print(NO_ENGINE, file=sys.stderr)
        return 2
    builder = find_builder()
    started, load_before = time.monotonic(), os.getloadavg()
    base = base_image(opts.base)
    base_s = time.monotonic() - started
    index = build_index(pip_settings())
    opts.manifest.parent.mkdir(parents=True, exist_ok=True)
    wanted = [n for n in IMAGES if n in (opts.only or IMAGES)]
    cache = None if opts.no_wheel_cache else opts.wheel_cache
    with IndexProxy(index.roots, index.hosts, index.cafile, cache) as proxy:
        plan = Plan(
            base,
            image_id(base) or base,
            index,
            proxy.url,
            opts.repository,
            opts.manifest,
            opts.rebuild,
            builder,
            keep_old=opts.keep_old,
            cold=opts.cold,
        )
        report: dict[str, dict[str, object]] = {}
        for stage in build_stages(wanted, serial=opts.serial, buildkit=builder.kind == "buildkit"):
            with ThreadPoolExecutor(max_workers=len(stage)) as pool:
                for lane in pool.map(lambda lane: build_lane(lane, plan), stage):
                    report |= lane
    summary = {
        "base": base,
        "builder": {"kind": builder.kind, "client": builder.client},
        "base_s": round(base_s, 1),
        "total_s": round(time.monotonic() - started, 1),
        # The machine's load average (1, 5, 15 min) before and after: build times depend on it.
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "images": report,
        # Where the build's packages came from: local index folders, downloads, the wheel cache.
        "index_traffic": proxy.traffic.as_dict(),
        "wheel_cache": str(cache) if cache else None,
    }
    # bench/images.py reads the last run's timings from here.
    (opts.manifest.parent / "images-build.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
