"""Write one requirements file per pyproject extra, for the images' dependency layers.

Run inside the image build (standard library only, so it works on any Python 3.11 base):

    python3 requirements.py pyproject.toml /reqs

writes ``/reqs/<extra>.txt`` for every optional-dependency group, with the core dependencies and the
groups it includes (``portfolio-os[features]``) expanded. The images install these files with
``-c requirements/constraints.txt`` in a layer of their own, before any source is copied, so a
code-only change never reinstalls a dependency; and because the files depend only on the
dependency lists (not on the rest of pyproject.toml), editing a tool's settings keeps that layer too.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_SELF = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)\[(?P<extras>[^\]]+)\]\s*$")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def expand(project: dict[str, object], extra: str, seen: frozenset[str] = frozenset()) -> list[str]:
    """The requirements of ``extra``: its own lines plus those of every project extra it names."""
    name = _normalise(str(project["name"]))
    groups = project.get("optional-dependencies", {})
    assert isinstance(groups, dict)
    if extra not in groups:
        raise SystemExit(f"requirements.py: no extra {extra!r} in [project.optional-dependencies]")
    if extra in seen:
        raise SystemExit(f"requirements.py: extra {extra!r} includes itself")
    lines: list[str] = []
    for req in groups[extra]:
        match = _SELF.match(req)
        if match and _normalise(match["name"]) == name:
            for sub in match["extras"].split(","):
                lines += expand(project, sub.strip(), seen | {extra})
        else:
            lines.append(req)
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: requirements.py PYPROJECT OUT_DIR", file=sys.stderr)
        return 2
    project = tomllib.loads(Path(argv[0]).read_text(encoding="utf-8"))["project"]
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    core = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}):
        lines = list(dict.fromkeys(core + expand(project, extra)))
        (out / f"{extra}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
