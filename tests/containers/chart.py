"""The chart rendered for the container tests: dev values, test values, and the locally built images.

The images come from ``make images``'s manifest (``build/images.json``: image name -> local
``repository:tag``); they are handed to helm as ``images.<name>.repository/tag`` values, so the
rendered specs name exactly the images the engine holds, as a deploy with those values would.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml

from tests.chart_tools import CHART, RELEASE, ROOT, rendered_objects
from tests.image_build import wait_for_images

DEV_VALUES: Final = CHART / "ci" / "dev-values.yaml"
CONTAINER_VALUES: Final = CHART / "ci" / "container-values.yaml"
MANIFEST: Final = Path(os.environ.get("PORTFOLIO_OS_IMAGES_MANIFEST") or ROOT / "build" / "images.json")
RELEASE_PREFIX: Final = f"{RELEASE}-portfolio-os-"
# The Secret container-values.yaml names for every secret the chart reads; the test fills it.
TEST_SECRET: Final = "pos-container-test"


class ManifestError(RuntimeError):
    """No usable image manifest: the message says how to build one."""


def _camel(name: str) -> str:
    head, *rest = name.replace("_", "-").split("-")
    return head + "".join(part.title() for part in rest)


def image_values(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """``images.<camelName>: {repository, tag}`` values from a manifest of image name -> ref (or {image|ref|tag})."""
    images: dict[str, Any] = {}
    for name, entry in manifest.items():
        ref = entry if isinstance(entry, str) else entry.get("image") or entry.get("ref") or entry.get("tag")
        if not isinstance(ref, str) or ":" not in ref.rsplit("/", 1)[-1]:
            raise ManifestError(f"{MANIFEST}: entry {name!r} has no repository:tag reference ({entry!r})")
        repository, tag = ref.rsplit(":", 1)
        images[_camel(name)] = {"repository": repository, "tag": tag}
    return {"images": images}


def read_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    wait_for_images()
    if not path.is_file():
        raise ManifestError(f"no image manifest at {path}: run `make images` (after scripts/docker_engine.sh)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not JSON ({e})") from e
    images = data.get("images", data) if isinstance(data, dict) else None
    if not isinstance(images, dict) or not images:
        raise ManifestError(f"{path}: expected an object of image name -> repository:tag")
    return images


def render(images_values: Path | None) -> list[dict[str, Any]]:
    """The chart's objects with the dev values, the container-test values and (when given) the images."""
    extra: list[str] = ["--values", str(CONTAINER_VALUES)]
    if images_values is not None:
        extra += ["--values", str(images_values)]
    return rendered_objects(DEV_VALUES, *extra)


def chart_image_keys() -> set[str]:
    """The image names the chart's values declare (``images.<name>.repository``)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    return {k for k, v in values["images"].items() if isinstance(v, dict) and "repository" in v}


def write_image_values(manifest: Mapping[str, Any], path: Path) -> Path:
    """The manifest's images as a values file (only images the chart declares; the schema refuses others)."""
    images = image_values(manifest)["images"]
    declared = chart_image_keys()
    missing = declared - set(images)
    if missing:
        raise ManifestError(f"{MANIFEST} lacks {sorted(missing)}: run `make images`")
    path.write_text(yaml.safe_dump({"images": {k: v for k, v in images.items() if k in declared}}))
    return path
