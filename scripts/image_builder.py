"""Which ``docker build`` runs the image builds, and where its time went (``scripts/images.py``).

BuildKit when the engine and client offer it, else the legacy builder. BuildKit runs a Dockerfile's
independent stages side by side, skips the stages the target does not need, and computes a step
that two builds running at once share only once; on this 2-core machine it made the cold
``make images`` markedly shorter (docs/deploy.md gives the figures). A client offers it when it has
the buildx plugin (Docker 23 and newer build with it), or when it is older than 23 (Debian's
docker.io 20.10 has BuildKit built in, switched on by ``DOCKER_BUILDKIT=1``). The static Docker 28
client some machines carry has neither plugin nor built-in BuildKit, so Debian's
``/usr/bin/docker`` is tried after the one on PATH.

``PORTFOLIO_OS_BUILDER=legacy`` (or ``buildkit``) forces the choice.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Final, Literal

Kind = Literal["buildkit", "legacy"]
BUILDER_ENV: Final = "PORTFOLIO_OS_BUILDER"
DEBIAN_CLIENT: Final = "/usr/bin/docker"

# Legacy builder: "Step 3/12 : RUN pip install ..." opens a step, which runs until the next one opens.
_LEGACY_STEP = re.compile(r"^Step (?P<n>\d+)/\d+ : (?P<what>.*)$")
# BuildKit (--progress=plain): "#7 [deps 3/9] RUN ..." names step 7; "#7 DONE 12.3s" ends it. Steps
# of independent stages interleave, so each step is timed by its own DONE line.
_KIT_NAME = re.compile(r"^#(?P<n>\d+) (?P<what>\[.+|exporting to image)$")
_KIT_DONE = re.compile(r"^#(?P<n>\d+) DONE (?P<s>[0-9.]+)s$")


@dataclass(frozen=True)
class Builder:
    """A docker client and how it builds."""

    client: str
    kind: Kind

    def command(self) -> list[str]:
        """``docker build`` with the progress output :class:`StepClock` reads."""
        extra = ["--progress=plain"] if self.kind == "buildkit" else []
        return [self.client, "build", *extra]

    def environment(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_BUILDKIT": "1" if self.kind == "buildkit" else "0"}


def _client_major(client: str) -> int | None:
    try:
        result = subprocess.run(
            [client, "version", "--format", "{{.Client.Version}}"], check=False, text=True, capture_output=True
        )
    except OSError:
        return None
    match = re.match(r"(\d+)\.", result.stdout.strip())
    return int(match[1]) if match else None


def _offers_buildkit(client: str) -> bool:
    major = _client_major(client)
    if major is None:
        return False
    if major < 23:
        return True
    buildx = subprocess.run([client, "buildx", "version"], check=False, capture_output=True)
    return buildx.returncode == 0


def find_builder() -> Builder:
    """BuildKit through the first client that offers it (PATH's docker, then Debian's), else legacy."""
    forced = os.environ.get(BUILDER_ENV, "").strip().lower()
    if forced not in ("", "buildkit", "legacy"):
        raise SystemExit(f"images.py: {BUILDER_ENV}={forced!r}: use buildkit or legacy (or leave it unset)")
    on_path = shutil.which("docker") or "docker"
    if forced == "legacy":
        return Builder(on_path, "legacy")
    for client in dict.fromkeys([on_path, DEBIAN_CLIENT]):
        if _offers_buildkit(client):
            return Builder(client, "buildkit")
    if forced == "buildkit":
        raise SystemExit(
            f"images.py: {BUILDER_ENV}=buildkit but no docker client here builds with BuildKit "
            "(install the buildx plugin, or Debian's docker.io)"
        )
    return Builder(on_path, "legacy")


@dataclass
class StepClock:
    """Reads a build's output line by line; :meth:`steps` says which steps took ``at_least`` seconds."""

    kind: Kind
    _opened: list[tuple[float, str]] = field(default_factory=list)  # legacy: (seconds since start, step)
    _names: dict[str, str] = field(default_factory=dict)  # BuildKit: step number -> what it runs
    _done: list[tuple[str, float]] = field(default_factory=list)  # BuildKit: (step, seconds)

    def read(self, at: float, line: str) -> None:
        """One output line, ``at`` seconds after the build started."""
        line = line.strip()
        if self.kind == "legacy":
            match = _LEGACY_STEP.match(line)
            if match:
                self._opened.append((at, f"{match['n']}: {match['what'][:120]}"))
            return
        done = _KIT_DONE.match(line)
        if done:
            self._done.append((self._names.get(done["n"], f"#{done['n']}"), float(done["s"])))
            return
        named = _KIT_NAME.match(line)
        if named:
            self._names.setdefault(named["n"], f"{named['n']}: {named['what'][:120]}")

    def steps(self, end: float, at_least: float = 1.0) -> list[dict[str, object]]:
        if self.kind == "legacy":
            return step_seconds(self._opened, end, at_least)
        return [{"step": what, "seconds": round(s, 1)} for what, s in self._done if s >= at_least]


def step_seconds(steps: list[tuple[float, str]], end: float, at_least: float = 1.0) -> list[dict[str, object]]:
    """Each step's seconds (from its start to the next one's, the last to ``end``), those of ``at_least`` or more."""
    ends = [at for at, _ in steps[1:]] + [end] if steps else []
    return [
        {"step": what, "seconds": round(stop - at, 1)}
        for (at, what), stop in zip(steps, ends, strict=True)
        if stop - at >= at_least
    ]
