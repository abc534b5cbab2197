"""The tear sheet: escaping, tables, plot data, size, and rendering in a real headless chromium.

Every sheet here is built from SYNTHETIC strategy results made directly with numpy.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from training.allocation.results import StrategyResult
from training.allocation.tearsheet import build_tearsheet, write_tearsheet
from training.errors import TrainingError

LABEL = "SYNTHETIC data: seeded Gaussian returns (tests only)"
FIGURES = ("equity", "drawdown", "rolling-sharpe", "weights", "turnover", "fan")
EVIL = "<script>alert(1)</script>"


def make_result(name: str, *, seed: int, sessions: int = 300, assets: int = 4, label: str = LABEL) -> StrategyResult:
    """A SYNTHETIC strategy result: random long-only weights, Gaussian returns, some turnover."""
    rng = np.random.default_rng(seed)
    dates = np.busday_offset(np.datetime64("2021-01-04"), np.arange(sessions), roll="forward")
    weights = rng.dirichlet(np.ones(assets), size=sessions) * 0.9
    returns = rng.normal(3e-4, 0.01, sessions)
    turnover = np.abs(rng.normal(0.0, 0.05, sessions))
    return StrategyResult(
        name=name,
        dates=dates,
        returns=returns,
        gross_returns=returns + turnover * 1e-3,
        weights=weights,
        cash=1.0 - weights.sum(axis=1),
        turnover=turnover,
        costs=turnover * 1e-3,
        tickers=tuple(f"T{i:02d}" for i in range(assets)),
        rebalance_every=1,
        label=label,
    )


def make_table(results: list[StrategyResult]) -> pd.DataFrame:
    rows = {
        r.name: {"annual_return": 0.1234 + i, "volatility": 0.15, "sharpe": 1.23456, "max_drawdown": -0.25, "n": 1008}
        for i, r in enumerate(results)
    }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "strategy"
    return table


def make_fan(horizon: int = 60) -> dict[float, np.ndarray]:
    spread = np.sqrt(np.arange(1, horizon + 1)) * 0.02
    return {q: 1.0 + (q - 0.5) * spread for q in (0.05, 0.25, 0.5, 0.75, 0.95)}


def sheet(results: list[StrategyResult] | None = None, **options) -> str:
    """A full sheet (benchmark, regimes, fan, extra table) with ``options`` overriding the defaults."""
    results = results or [make_result(n, seed=i) for i, n in enumerate(("ppo", "min_variance", "top_k"))]
    sessions = results[0].dates.size
    third = sessions // 3
    defaults = {
        "table": make_table(results),
        "benchmark": np.random.default_rng(99).normal(2e-4, 0.01, sessions),
        "benchmark_name": "SPY",
        "extra_tables": {"Stress windows": make_table(results).iloc[:1]},
        "regimes": np.array(["bull"] * third + ["bear"] * third + ["unknown"] * (sessions - 2 * third)),
        "fan": make_fan(),
        "fan_strategy": results[0].name,
        "title": "Allocation test sheet",
        "notes": ["the test segment was untouched by tuning"],
        "generated_at": datetime(2024, 5, 6, 7, 8, tzinfo=UTC),
    }
    return build_tearsheet(results, **{**defaults, **options})


def section(page: str, pattern: str) -> str:
    found = re.search(pattern, page)
    assert found is not None, pattern
    return found[1]


def figure(page: str, key: str) -> dict[str, Any]:
    """The plotly JSON of one figure, with the shared session dates put back in as the loader does."""
    sessions = json.loads(section(page, r'<script type="application/json" id="sessions">(.*?)</script>'))
    spec: dict[str, Any] = json.loads(
        section(page, rf'<script type="application/json" id="fig-{key}-data">(.*?)</script>')
    )
    for trace in spec["data"]:
        if trace.get("meta") == "sessions":
            trace["x"] = sessions
    return spec


def trace(spec: dict[str, Any], name: str) -> np.ndarray:
    (found,) = [t for t in spec["data"] if t.get("name") == name]
    return np.array([np.nan if v is None else v for v in found["y"]], dtype=float)


class Tags(HTMLParser):
    """Start tags and their attributes (script bodies are not parsed as markup, as in a browser)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(page)
    return parser.tags


# -- pure Python ----------------------------------------------------------------------------------


def test_sheet_is_self_contained_with_plotly_js_once() -> None:
    page = sheet()
    scripts = [attrs for tag, attrs in tags(page) if tag == "script"]
    assert all("src" not in attrs for attrs in scripts), "every script must be inline"
    assert not re.search(r"<link[^>]+href=|url\(\s*['\"]?https?://", page)
    assert page.count("* plotly.js v") == 1
    assert [a["id"] for t, a in tags(page) if t == "div" and a.get("class") == "figure"] == [
        f"fig-{k}" for k in FIGURES
    ]
    # one bundle, one error hook, one loader, the sessions and one JSON block per figure
    assert len(scripts) == 4 + len(FIGURES)


def test_user_strings_are_escaped_everywhere() -> None:
    results = [make_result(EVIL, seed=0), make_result("ppo", seed=1)]
    page = sheet(
        results,
        title=f"title {EVIL}",
        notes=[f"note {EVIL}"],
        benchmark_name=EVIL,
        fan_strategy=EVIL,
        extra_tables={f"extra {EVIL}": make_table(results).rename(columns={"sharpe": EVIL})},
    )
    assert "alert(1)" in page
    assert "<script>alert" not in page
    # <title>, <h1>, the note, the benchmark, a row of each table, the extra table's name and column
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 8
    # the parser sees only the sheet's own scripts: nothing was injected
    assert sum(tag == "script" for tag, _ in tags(page)) == 4 + len(FIGURES)
    names = {t["name"] for t in figure(page, "equity")["data"]}
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in names, "plotly shows entities as the characters"
    assert "&lt;script&gt;" in figure(page, "weights")["layout"]["title"]["text"]


def test_tables_list_every_strategy_with_number_formats() -> None:
    results = [make_result(n, seed=i) for i, n in enumerate(("ppo", "a2c", "equal_weight", "min_variance"))]
    table = make_table(results)
    table.loc["a2c", "sharpe"] = np.nan
    page = sheet(results, table=table)
    comparison = section(page, r"<h2>Comparison of strategies</h2><table>(.*?)</table>")
    assert re.search(r"<thead><tr><th>strategy</th><th>annual_return</th>.*<th>n</th></tr></thead>", comparison)
    rows = re.findall(r"<tr><th>(.*?)</th>(.*?)</tr>", comparison.split("<tbody>")[1])
    assert [name for name, _ in rows] == [r.name for r in results]
    cells = {name: re.findall(r'<td class="num">(.*?)</td>', rest) for name, rest in rows}
    assert cells["ppo"] == ["12.34%", "15.00%", "1.23", "-25.00%", "1,008"]
    assert cells["a2c"] == ["112.34%", "15.00%", "–", "-25.00%", "1,008"]
    assert "<h2>Stress windows</h2>" in page


def test_header_shows_label_window_time_and_notes() -> None:
    page = sheet(notes=["first note", "second note"])
    assert f'<p class="label synthetic">{LABEL}</p>' in page
    assert "2021-01-04 to 2022-02-25 (300 sessions)" in page
    assert "2024-05-06 07:08 UTC" in page
    assert "<li>first note</li><li>second note</li>" in page
    real = [make_result("ppo", seed=0, label="REAL data: the bundled S&P 500 sample")]
    assert '<p class="label real">REAL data: the bundled S&amp;P 500 sample</p>' in sheet(real)


def test_plot_data_are_the_strategies_curves() -> None:
    results = [make_result("ppo", seed=0), make_result("top_k", seed=1)]
    benchmark = np.random.default_rng(5).normal(0.0, 0.01, 300)
    page = sheet(results, benchmark=benchmark, rolling_window=50, turnover_window=10)
    equity = figure(page, "equity")
    np.testing.assert_allclose(trace(equity, "ppo"), results[0].equity(), atol=1e-4)
    np.testing.assert_allclose(trace(equity, "SPY"), np.cumprod(1 + benchmark), atol=1e-4)
    assert equity["data"][0]["x"][0] == "2021-01-04"
    wealth = results[1].equity()
    expected_dd = wealth / np.maximum.accumulate(np.maximum(wealth, 1.0)) - 1.0
    np.testing.assert_allclose(trace(figure(page, "drawdown"), "top_k"), expected_dd, atol=1e-4)
    window = results[0].returns[-50:]
    sharpe = trace(figure(page, "rolling-sharpe"), "ppo")
    assert np.isnan(sharpe[:49]).all()
    assert sharpe[-1] == pytest.approx(window.mean() / window.std(ddof=1) * np.sqrt(252), abs=0.01)
    turnover = trace(figure(page, "turnover"), "top_k")
    assert turnover[-1] == pytest.approx(results[1].turnover[-10:].sum(), abs=1e-4)
    weights = figure(page, "weights")
    assert [t["name"] for t in weights["data"]] == ["T00", "T01", "T02", "T03", "cash"]
    assert {t["stackgroup"] for t in weights["data"]} == {"weights"}


def test_regimes_shade_the_equity_plot_and_the_fan_has_its_bands() -> None:
    regimes = np.array(["bull"] * 100 + ["unknown"] * 50 + ["bear"] * 100 + ["sideways"] * 50)
    page = sheet(regimes=regimes, log_scale=True)
    equity = figure(page, "equity")
    bands = [(s["x0"], s["x1"], s["fillcolor"]) for s in equity["layout"]["shapes"]]
    assert len(bands) == 3, "one band per shaded run, none for unknown"
    assert bands[0][0] == "2021-01-04"
    assert equity["layout"]["yaxis"]["type"] == "log"
    assert {"bull regime", "bear regime", "sideways regime"} <= {t.get("name") for t in equity["data"]}
    fan = figure(page, "fan")
    assert [t["name"] for t in fan["data"]] == ["5%-95%", "5%-95%", "25%-75%", "25%-75%", "median"]
    np.testing.assert_allclose(fan["data"][-1]["y"], make_fan()[0.5], atol=1e-4)


def test_long_backtests_are_thinned_to_3000_points() -> None:
    results = [make_result("ppo", seed=0, sessions=10_000, assets=2)]
    spec = figure(sheet(results, regimes=None), "equity")
    (ppo,) = [t for t in spec["data"] if t["name"] == "ppo"]
    assert 2_000 < len(ppo["x"]) == len(ppo["y"]) <= 3_001
    assert ppo["x"][-1] == str(results[0].dates[-1])
    assert ppo["y"][-1] == pytest.approx(results[0].equity()[-1], abs=1e-4)


def test_a_full_size_sheet_stays_under_6_mb(tmp_path: Path) -> None:
    """20 assets, 4 years, 10 strategies: plotly.js (about 4.6 MB) plus the data."""
    results = [make_result(f"strategy_{i}", seed=i, sessions=1008, assets=20) for i in range(10)]
    path = write_tearsheet(tmp_path / "sub" / "sheet.html", results, table=make_table(results), regimes=None)
    assert path.stat().st_size < 6_000_000


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"results": [make_result("a", seed=0), make_result("a", seed=1)]}, "unique"),
        ({"results": [make_result("a", seed=0), make_result("b", seed=1, sessions=200)]}, "other sessions"),
        ({"results": [make_result("a", seed=0), make_result("b", seed=1, label="REAL data: x")]}, "mixed data labels"),
        ({"benchmark": np.zeros(10)}, "benchmark must hold"),
        ({"regimes": np.array(["bull"] * 299 + ["crash"])}, "unknown regime"),
        ({"regimes": np.array(["bull"] * 5)}, "regimes must hold"),
        ({"weights_strategy": "nope"}, "weights_strategy 'nope'"),
        ({"fan_strategy": "nope"}, "fan_strategy 'nope'"),
        ({"fan": {0.5: np.ones(5), 0.05: np.ones(5)}}, r"lacks the quantile path\(s\) \[0.25"),
        ({"fan": {**make_fan(), 0.95: np.ones(3)}}, "one length"),
        ({"rolling_window": 1}, "rolling_window must be >= 2"),
    ],
)
def test_inputs_that_do_not_line_up_are_refused(change: dict[str, Any], message: str) -> None:
    options = dict(change)
    results = options.pop("results", [make_result("a", seed=0)])
    with pytest.raises(TrainingError, match=message):
        sheet(results, **options)


def test_no_results_is_refused() -> None:
    with pytest.raises(TrainingError, match="at least one"):
        build_tearsheet([], table=pd.DataFrame())


# -- a real headless browser ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not installed: run scripts/install_chromium.sh (make venv runs it)")
    return found


def run_chromium(binary: str, tmp_path: Path, page: Path, *args: str) -> str:
    """Open ``page`` headless, offline (a dead proxy: anything remote would fail to load), and let scripts run."""
    command = [
        binary,
        "--headless=new",
        "--no-sandbox",  # needed as root in containers
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--proxy-server=http://127.0.0.1:9",
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=10000",
        *args,
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_sheet_renders_in_headless_chromium(chromium: str, tmp_path: Path) -> None:
    results = [make_result("ppo", seed=0), make_result("top_k", seed=1)]
    page = write_tearsheet(tmp_path / "sheet.html", results, table=make_table(results))
    dom = run_chromium(chromium, tmp_path, page, "--dump-dom")
    assert '<p class="js-error">' not in dom
    rendered = re.findall(r'<div class="figure js-plotly-plot" id="fig-([\w-]+)"', dom)
    assert rendered == list(FIGURES[:-1]), "every figure div was drawn by plotly"
    assert dom.count('class="main-svg"') >= len(rendered)
    assert len(re.findall(r'class="scatterlayer', dom)) >= len(rendered)

    shot = tmp_path / "sheet.png"
    run_chromium(chromium, tmp_path, page, "--window-size=1280,1800", "--hide-scrollbars", f"--screenshot={shot}")
    pixels = (matplotlib.image.imread(shot)[..., :3] * 255).astype(np.int32)
    colours = np.unique(pixels[..., 0] << 16 | pixels[..., 1] << 8 | pixels[..., 2])
    assert colours.size > 1000, f"the screenshot looks blank ({colours.size} colours)"
    saturated = (pixels.max(axis=-1) - pixels.min(axis=-1)) > 80
    assert saturated.mean() > 0.005, "no coloured curves on the screenshot"


@pytest.mark.slow
def test_browser_check_sees_a_broken_page(chromium: str, tmp_path: Path) -> None:
    """The check above can fail: a page whose plot call throws shows the error marker and draws nothing."""
    page = tmp_path / "broken.html"
    page.write_text(sheet().replace("Plotly.newPlot(div", "Plotly.noSuchCall(div"), encoding="utf-8")
    dom = run_chromium(chromium, tmp_path, page, "--dump-dom")
    assert '<p class="js-error">A plot failed to render: Uncaught TypeError' in dom
    assert 'class="main-svg"' not in dom
