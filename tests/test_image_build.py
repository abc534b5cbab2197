"""The plugin that builds the images beside the tests (tests/image_build.py)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import image_build


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_failed_build_fails_with_its_log_tail(tmp_path: Path) -> None:
    build = image_build.BackgroundBuild.start(
        _python("import sys; print('step 1'); print('pip: no matching distribution'); sys.exit(3)"), tmp_path / "b.log"
    )
    with pytest.raises(image_build.ImagesBuildFailed, match="exited 3") as failed:
        build.wait()
    assert "pip: no matching distribution" in str(failed.value)
    with pytest.raises(image_build.ImagesBuildFailed):  # every image test that asks after it fails too
        build.wait()


def test_a_finished_build_lets_the_image_tests_go_on(tmp_path: Path) -> None:
    build = image_build.BackgroundBuild.start(_python("print('built')"), tmp_path / "b.log")
    build.wait()
    assert build.tail() == "built"


def test_a_run_that_ends_early_stops_the_build(tmp_path: Path) -> None:
    build = image_build.BackgroundBuild.start(_python("import time; time.sleep(600)"), tmp_path / "b.log")
    build.stop()
    assert build.process.returncode is not None


@dataclass
class _Item:
    """What the reordering reads of a collected test: its name and its markers."""

    name: str
    markers: set[str] = field(default_factory=set)

    def get_closest_marker(self, name: str) -> object | None:
        return name if name in self.markers else None


def test_the_image_tests_run_last_in_their_own_order() -> None:
    items = [_Item("a", {"images"}), _Item("b"), _Item("c", {"images", "slow"}), _Item("d", {"slow"})]
    image_build.pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    assert [i.name for i in items] == ["b", "d", "a", "c"]


def test_an_unknown_mode_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(image_build.MODE_ENV, "foreground")
    with pytest.raises(pytest.UsageError, match="PORTFOLIO_OS_BUILD_IMAGES='foreground'"):
        image_build.pytest_configure(None)  # type: ignore[arg-type]
