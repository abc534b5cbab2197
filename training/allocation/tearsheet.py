"""The tear sheet: one self-contained HTML file comparing every strategy of a backtest.

The file opens offline: plotly.js is inlined once in ``<head>``, each figure's data sits in a
``<script type="application/json">`` block and one small loader draws them all. The session dates
are stored once and shared by every daily trace (a trace carries ``meta: "sessions"`` instead of
its own ``x``): the dates would otherwise be most of the file, once per trace.

Every string that comes from the caller (title, notes, labels, strategy, ticker and column names)
is HTML-escaped, in the page and in the plots alike: plotly draws text as its own small HTML
dialect and turns the entities back into the characters, so a name shows exactly as written.

Usage::

    html = build_tearsheet(results, table=comparison, benchmark=panel.benchmark, title="PPO vs classics")
    write_tearsheet(run_dir / "tearsheet.html", results, table=comparison, notes=["test segment untouched"])
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Required, TypedDict, Unpack

import numpy as np
import numpy.typing as npt
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.offline import get_plotlyjs

from feature_repo.transforms.regime import BEAR, BULL, SIDEWAYS, UNKNOWN
from training.allocation.results import FloatArray, StrategyResult, check_comparable
from training.errors import TrainingError

TRADING_DAYS = 252
# Daily series longer than this are thinned to every k-th session (the last one always kept):
# past a few thousand points a chart shows nothing more, and the file grows linearly. A thinned
# curve may step over the exact trough: the tables, computed on every session, carry the numbers.
MAX_POINTS = 3000
FAN_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
REGIME_COLOURS = {BULL: "rgba(44,160,44,0.13)", BEAR: "rgba(214,39,40,0.13)", SIDEWAYS: "rgba(127,127,127,0.16)"}
UNKNOWN_REGIME = UNKNOWN  # the labels are the ground floor's (feature_repo.transforms.regime)
# Table columns are formatted by name: ratio words win over percent words ("return_over_drawdown"
# is a ratio). Anything else numeric gets 4 significant digits.
RATIO_WORDS = ("ratio", "sharpe", "sortino", "calmar", "beta", "skew", "kurt", "dsr", "psr", "stat")
PERCENT_WORDS = (
    "return",
    "cagr",
    "vol",
    "drawdown",
    "turnover",
    "cost",
    "alpha",
    "tracking",
    "excess",
    "hit",
    "win",
    "cvar",
)
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}


class TearsheetOptions(TypedDict, total=False):
    """The keyword options of :func:`build_tearsheet`, so :func:`write_tearsheet` forwards them typed."""

    table: Required[pd.DataFrame]
    benchmark: FloatArray | None
    benchmark_name: str
    extra_tables: Mapping[str, pd.DataFrame] | None
    regimes: npt.NDArray[np.str_] | Sequence[str] | None
    fan: Mapping[float, FloatArray] | None
    fan_strategy: str | None
    weights_strategy: str | None
    title: str
    notes: Sequence[str]
    log_scale: bool
    rolling_window: int
    turnover_window: int
    generated_at: datetime | None


def build_tearsheet(
    results: Sequence[StrategyResult],
    *,
    table: pd.DataFrame,
    benchmark: FloatArray | None = None,
    benchmark_name: str = "benchmark",
    extra_tables: Mapping[str, pd.DataFrame] | None = None,
    regimes: npt.NDArray[np.str_] | Sequence[str] | None = None,
    fan: Mapping[float, FloatArray] | None = None,
    fan_strategy: str | None = None,
    weights_strategy: str | None = None,
    title: str = "Portfolio tear sheet",
    notes: Sequence[str] = (),
    log_scale: bool = False,
    rolling_window: int = 126,
    turnover_window: int = 21,
    generated_at: datetime | None = None,
) -> str:
    """The tear sheet of ``results`` as one HTML document.

    Args:
        results: the strategies, all on the same sessions and from the same data (one label).
        table: the comparison table, one row per strategy (formatted by column name, see
            ``RATIO_WORDS`` and ``PERCENT_WORDS``).
        benchmark: daily simple returns of the benchmark on the same sessions, or None.
        benchmark_name: its name in the plots.
        extra_tables: more tables (stress windows, per regime...), title -> frame, shown in order.
        regimes: one of ``bull``, ``bear``, ``sideways``, ``unknown`` per session; shades the
            equity plot (``unknown`` is left unshaded).
        fan: Monte Carlo quantiles of equity, quantile -> path ``[horizon]``; needs at least the
            0.05, 0.25, 0.5, 0.75 and 0.95 paths.
        fan_strategy: whose simulation ``fan`` is (a strategy or the benchmark), for its title.
        weights_strategy: whose weights to plot; the first strategy when None.
        title: the page title.
        notes: free-text remarks shown under the header (how the test segment was kept clean...).
        log_scale: start the equity plot on a log axis (a button switches it in the page).
        rolling_window: sessions of the rolling Sharpe ratio (annualised with 252 sessions).
        turnover_window: sessions summed in the rolling turnover.
        generated_at: the time printed in the header; now when None.

    Raises:
        TrainingError: inputs that do not line up (other sessions, mixed labels, a missing
            strategy or quantile, an unknown regime, a window too short).
    """
    first = _check_results(results)
    _check_inputs(first, benchmark, regimes, rolling_window, turnover_window)
    weights_of = _check_named(results, first, benchmark_name, weights_strategy, fan_strategy)
    keep = _thin(first.dates.size)
    figures = _figures(
        results, keep, benchmark=benchmark, benchmark_name=benchmark_name, weights_of=weights_of, regimes=regimes,
        log_scale=log_scale, rolling_window=rolling_window, turnover_window=turnover_window,
    )  # fmt: skip
    if fan is not None:
        figures["fan"] = _fan_figure(fan, fan_strategy)
    header = _header(title, first, benchmark_name if benchmark is not None else None, notes, generated_at)
    # The comparison first, then the plots (people would rather look than read), then the detail tables.
    body = header + _table_section("Comparison of strategies", table)
    details = "".join(_table_section(name, frame) for name, frame in (extra_tables or {}).items())
    sessions = np.datetime_as_string(first.dates[keep], unit="D").tolist()
    return _page(title, body, figures, sessions, details)


def _check_named(
    results: Sequence[StrategyResult],
    first: StrategyResult,
    benchmark_name: str,
    weights_strategy: str | None,
    fan_strategy: str | None,
) -> StrategyResult:
    """The strategy whose weights are plotted; the fan's owner must be a strategy or the benchmark."""
    weights_of = _pick(results, weights_strategy or first.name, "weights_strategy")
    names = [r.name for r in results]
    if fan_strategy is not None and fan_strategy not in [*names, benchmark_name]:
        raise TrainingError(f"fan_strategy {fan_strategy!r} is neither a strategy ({names}) nor the benchmark")
    return weights_of


def _figures(
    results: Sequence[StrategyResult],
    keep: npt.NDArray[np.intp],
    *,
    benchmark: FloatArray | None,
    benchmark_name: str,
    weights_of: StrategyResult,
    regimes: npt.NDArray[np.str_] | Sequence[str] | None,
    log_scale: bool,
    rolling_window: int,
    turnover_window: int,
) -> dict[str, go.Figure]:
    """The daily figures, by the element id each is drawn into (the fan, when there is one, comes after)."""
    return {
        "equity": _equity_figure(results, benchmark, benchmark_name, keep, regimes=regimes, log_scale=log_scale),
        "drawdown": _drawdown_figure(results, benchmark, benchmark_name, keep),
        "rolling-sharpe": _rolling_sharpe_figure(results, benchmark, benchmark_name, keep, rolling_window),
        "weights": _weights_figure(weights_of, keep),
        "turnover": _turnover_figure(results, keep, turnover_window),
    }


def write_tearsheet(path: str | Path, results: Sequence[StrategyResult], **options: Unpack[TearsheetOptions]) -> Path:
    """Build the tear sheet (same options as :func:`build_tearsheet`) and write it to ``path`` (UTF-8)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(build_tearsheet(results, **options), encoding="utf-8")
    return target


# -- input checks ---------------------------------------------------------------------------------


def _check_results(results: Sequence[StrategyResult]) -> StrategyResult:
    """The first result, once every result is known to share its sessions and label."""
    first = check_comparable(results, "a tear sheet")
    for r in results[1:]:
        if r.label != first.label:
            raise TrainingError(f"mixed data labels: {first.label!r} ({first.name}) and {r.label!r} ({r.name})")
    return first


def _check_inputs(
    first: StrategyResult,
    benchmark: FloatArray | None,
    regimes: npt.NDArray[np.str_] | Sequence[str] | None,
    rolling_window: int,
    turnover_window: int,
) -> None:
    sessions = first.dates.size
    if benchmark is not None and np.shape(benchmark) != (sessions,):
        raise TrainingError(f"benchmark must hold one return per session [{sessions}], got {np.shape(benchmark)}")
    if regimes is not None:
        if np.shape(regimes) != (sessions,):
            raise TrainingError(f"regimes must hold one label per session [{sessions}], got {np.shape(regimes)}")
        unknown = set(map(str, regimes)) - {*REGIME_COLOURS, UNKNOWN_REGIME}
        if unknown:
            raise TrainingError(f"unknown regime label(s) {sorted(unknown)}: use {[*REGIME_COLOURS, UNKNOWN_REGIME]}")
    if rolling_window < 2 or turnover_window < 1:
        raise TrainingError(
            f"rolling_window must be >= 2 and turnover_window >= 1, got {rolling_window}, {turnover_window}"
        )


def _pick(results: Sequence[StrategyResult], name: str, what: str) -> StrategyResult:
    for r in results:
        if r.name == name:
            return r
    raise TrainingError(f"{what} {name!r} is not among the strategies {[r.name for r in results]}")


# -- series ---------------------------------------------------------------------------------------


def _thin(n: int, max_points: int = MAX_POINTS) -> npt.NDArray[np.intp]:
    """Positions kept of a daily series of ``n`` sessions: all of them, or every k-th and the last."""
    step = max(1, -(-n // max_points))
    keep = np.arange(0, n, step)
    return keep if keep[-1] == n - 1 else np.append(keep, n - 1)


def _equity(returns: FloatArray) -> FloatArray:
    """Compounded equity from 1.0 before the first session, as :meth:`StrategyResult.equity`."""
    return np.asarray(np.cumprod(1.0 + returns), dtype=np.float64)


def _drawdown(equity: FloatArray) -> FloatArray:
    """Underwater curve: the loss from the running peak (the start, 1.0, counts as a peak)."""
    peak = np.maximum.accumulate(np.maximum(equity, 1.0))
    return equity / peak - 1.0


def _rolling_sharpe(returns: FloatArray, window: int) -> FloatArray:
    """Annualised Sharpe ratio of the last ``window`` sessions (NaN before a full window or with no variance)."""
    frame = pd.Series(returns).rolling(window)
    mean, std = frame.mean().to_numpy(), frame.std(ddof=1).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(std > 1e-12, mean / std * np.sqrt(TRADING_DAYS), np.nan)
    return np.asarray(sharpe, dtype=np.float64)


def _rolling_sum(values: FloatArray, window: int) -> FloatArray:
    return np.asarray(pd.Series(values).rolling(window).sum().to_numpy(), dtype=np.float64)


def _series(
    results: Sequence[StrategyResult], benchmark: FloatArray | None, benchmark_name: str
) -> list[tuple[str, FloatArray, bool]]:
    """(name, daily returns, is the benchmark) of every strategy, the benchmark last."""
    out = [(r.name, r.returns, False) for r in results]
    if benchmark is not None:
        out.append((benchmark_name, np.asarray(benchmark, dtype=np.float64), True))
    return out


# -- figures --------------------------------------------------------------------------------------


def _line(
    name: str, y: FloatArray, keep: npt.NDArray[np.intp], decimals: int, *, benchmark: bool = False
) -> go.Scatter:
    """A daily line on the shared session axis (``meta``: the loader puts the dates in as ``x``)."""
    return go.Scatter(
        y=np.round(y[keep], decimals),
        name=html.escape(name),
        meta="sessions",
        mode="lines",
        line={"width": 2.2, "color": "black", "dash": "dash"} if benchmark else {"width": 1.4},
    )


def _layout(fig: go.Figure, title: str, y_title: str, y_format: str) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01},
        template="plotly_white",
        height=440,
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        hovermode="x unified",
        legend={"orientation": "h", "y": -0.12},
        yaxis={"title": y_title, "tickformat": y_format},
        xaxis={"type": "date"},
    )
    return fig


def _equity_figure(
    results: Sequence[StrategyResult],
    benchmark: FloatArray | None,
    benchmark_name: str,
    keep: npt.NDArray[np.intp],
    *,
    regimes: npt.NDArray[np.str_] | Sequence[str] | None,
    log_scale: bool,
) -> go.Figure:
    fig = go.Figure()
    for name, returns, is_benchmark in _series(results, benchmark, benchmark_name):
        fig.add_trace(_line(name, _equity(returns), keep, 4, benchmark=is_benchmark))
    _layout(fig, "Equity (net of costs, start = 1)", "equity", ".2f")
    fig.update_yaxes(type="log" if log_scale else "linear")
    fig.update_layout(
        updatemenus=[
            {
                "type": "buttons",
                "direction": "left",
                "x": 0.01,
                "xanchor": "left",
                "y": 0.99,
                "yanchor": "top",
                "active": int(log_scale),
                "buttons": [
                    {"label": "linear", "method": "relayout", "args": [{"yaxis.type": "linear"}]},
                    {"label": "log", "method": "relayout", "args": [{"yaxis.type": "log"}]},
                ],
            }
        ]
    )
    if regimes is not None:
        _shade_regimes(fig, results[0].dates, np.asarray(regimes, dtype=str))
    return fig


def _shade_regimes(fig: go.Figure, dates: npt.NDArray[np.datetime64], regimes: npt.NDArray[np.str_]) -> None:
    """One background band per run of a regime (from its first session to the next run's), and a legend key."""
    days = np.datetime_as_string(dates, unit="D")
    starts = np.flatnonzero(np.r_[True, regimes[1:] != regimes[:-1]])
    ends = np.r_[starts[1:], regimes.size - 1]
    for start, end in zip(starts, ends, strict=True):
        colour = REGIME_COLOURS.get(str(regimes[start]))
        if colour is not None:
            fig.add_vrect(x0=days[start], x1=days[end], fillcolor=colour, line_width=0, layer="below")
    for regime in dict.fromkeys(map(str, regimes)):
        if regime in REGIME_COLOURS:
            key = go.Scatter(x=[None], y=[None], mode="markers", name=f"{regime} regime", hoverinfo="skip")
            fig.add_trace(key.update(marker={"symbol": "square", "size": 12, "color": REGIME_COLOURS[regime]}))


def _drawdown_figure(
    results: Sequence[StrategyResult], benchmark: FloatArray | None, benchmark_name: str, keep: npt.NDArray[np.intp]
) -> go.Figure:
    fig = go.Figure()
    for name, returns, is_benchmark in _series(results, benchmark, benchmark_name):
        fig.add_trace(_line(name, _drawdown(_equity(returns)), keep, 4, benchmark=is_benchmark))
    return _layout(fig, "Drawdown (underwater)", "drawdown", ".0%")


def _rolling_sharpe_figure(
    results: Sequence[StrategyResult],
    benchmark: FloatArray | None,
    benchmark_name: str,
    keep: npt.NDArray[np.intp],
    window: int,
) -> go.Figure:
    fig = go.Figure()
    for name, returns, is_benchmark in _series(results, benchmark, benchmark_name):
        fig.add_trace(_line(name, _rolling_sharpe(returns, window), keep, 2, benchmark=is_benchmark))
    return _layout(fig, f"Rolling Sharpe ratio ({window} sessions, annualised)", "Sharpe", ".1f")


def _weights_figure(result: StrategyResult, keep: npt.NDArray[np.intp]) -> go.Figure:
    fig = go.Figure()
    palette = qualitative.Alphabet + qualitative.Light24
    columns = [*zip(result.tickers, result.weights.T, strict=True), ("cash", result.cash)]
    for i, (ticker, weight) in enumerate(columns):
        colour = "rgb(190,190,190)" if i == len(columns) - 1 else palette[i % len(palette)]
        trace = _line(ticker, weight, keep, 4)
        fig.add_trace(trace.update(stackgroup="weights", line={"width": 0.5, "color": colour}))
    return _layout(fig, f"Weights of {html.escape(result.name)} (after each session's trade)", "weight", ".0%")


def _turnover_figure(results: Sequence[StrategyResult], keep: npt.NDArray[np.intp], window: int) -> go.Figure:
    fig = go.Figure()
    for r in results:
        fig.add_trace(_line(r.name, _rolling_sum(r.turnover, window), keep, 4))
    return _layout(fig, f"One-way turnover, rolling {window}-session sum", "turnover", ".0%")


def _fan_figure(fan: Mapping[float, FloatArray], strategy: str | None) -> go.Figure:
    """Bands 5-95 and 25-75 around the median path; x counts sessions ahead (1 = the first simulated)."""
    paths = {round(float(q), 6): np.asarray(p, dtype=np.float64) for q, p in fan.items()}
    missing = [q for q in FAN_QUANTILES if q not in paths]
    if missing:
        raise TrainingError(f"the fan lacks the quantile path(s) {missing}; it needs {list(FAN_QUANTILES)}")
    horizon = {paths[q].shape for q in FAN_QUANTILES}
    if len(horizon) != 1 or len(next(iter(horizon))) != 1:
        raise TrainingError(f"the fan's quantile paths must be 1-D and of one length, got shapes {sorted(horizon)}")
    fig = go.Figure()
    for low, high, colour in ((0.05, 0.95, "rgba(31,119,180,0.15)"), (0.25, 0.75, "rgba(31,119,180,0.32)")):
        band = f"{low:.0%}-{high:.0%}"
        for q, fill in ((low, "none"), (high, "tonexty")):
            line = {"width": 0, "color": colour}
            trace = go.Scatter(x0=1, dx=1, y=np.round(paths[q], 4), name=band, mode="lines", line=line)
            fig.add_trace(trace.update(legendgroup=band, showlegend=fill != "none", fill=fill, fillcolor=colour))
    fig.add_trace(go.Scatter(x0=1, dx=1, y=np.round(paths[0.5], 4), name="median", line={"color": "rgb(31,119,180)"}))
    who = f" of {html.escape(strategy)}" if strategy is not None else ""
    _layout(fig, f"Monte Carlo fan{who} (equity quantiles)", "equity", ".2f")
    return fig.update_xaxes(type="linear", title="sessions ahead")


# -- HTML -----------------------------------------------------------------------------------------


def _column_kind(name: object) -> str:
    """``ratio``, ``percent`` or ``number``, from the column's name (see ``RATIO_WORDS``)."""
    lowered = str(name).lower()
    if any(word in lowered for word in RATIO_WORDS):
        return "ratio"
    return "percent" if any(word in lowered for word in PERCENT_WORDS) else "number"


def _cell(value: Any, kind: str) -> tuple[str, bool]:
    """A table cell's escaped text and whether it is numeric (right-aligned)."""
    if value is None or value is pd.NA:
        return "–", False
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        return html.escape(str(value)), False
    if isinstance(value, int | np.integer):
        return f"{int(value):,}", True
    if not np.isfinite(value):
        return "–", True
    formats = {"ratio": "{:.2f}", "percent": "{:.2%}", "number": "{:.4g}"}
    return formats[kind].format(float(value)), True


def _label_text(label: object) -> str:
    return " / ".join(map(str, label)) if isinstance(label, tuple) else str(label)


def _table_html(frame: pd.DataFrame) -> str:
    """The frame as an HTML table; the index is shown unless it is the default 0..n-1."""
    show_index = not isinstance(frame.index, pd.RangeIndex) or frame.index.name is not None
    kinds = [_column_kind(_label_text(c)) for c in frame.columns]
    head = [html.escape(_label_text(frame.index.name or "")) if show_index else None]
    head += [html.escape(_label_text(c)) for c in frame.columns]
    rows = []
    for index, values in zip(frame.index, frame.itertuples(index=False, name=None), strict=True):
        cells = [f"<th>{html.escape(_label_text(index))}</th>"] if show_index else []
        for value, kind in zip(values, kinds, strict=True):
            text, numeric = _cell(value, kind)
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    header = "".join(f"<th>{h}</th>" for h in head if h is not None)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _table_section(name: str, frame: pd.DataFrame) -> str:
    return f"<section><h2>{html.escape(name)}</h2>{_table_html(frame)}</section>"


def _header(
    title: str, first: StrategyResult, benchmark: str | None, notes: Sequence[str], generated_at: datetime | None
) -> str:
    """Title, the data label (styled by REAL/SYNTHETIC), the test window, the generation time and the notes."""
    when = (generated_at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    window = f"{first.dates[0]} to {first.dates[-1]} ({first.dates.size:,} sessions)"
    kind = "synthetic" if first.label.strip().upper().startswith("SYNTHETIC") else "real"
    facts = [("Test window", window), ("Generated", when), ("Benchmark", benchmark or "none")]
    facts_html = "".join(f"<dt>{k}</dt><dd>{html.escape(v)}</dd>" for k, v in facts)
    notes_html = f'<ul class="notes">{"".join(f"<li>{html.escape(n)}</li>" for n in notes)}</ul>' if notes else ""
    return (
        f"<header><h1>{html.escape(title)}</h1>"
        f'<p class="label {kind}">{html.escape(first.label)}</p>'
        f"<dl>{facts_html}</dl>{notes_html}</header>"
    )


_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{margin:0 0 8px}h2{margin:28px 0 8px;font-size:1.2em}
.label{display:inline-block;font-weight:700;font-size:1.15em;padding:6px 12px;border-radius:4px;margin:4px 0 10px}
.label.real{background:#e3f4e3;border:2px solid #2c8c2c}.label.synthetic{background:#fdecd2;border:2px solid #d0700a}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:0}dt{font-weight:600}dd{margin:0}
.notes{margin:10px 0 0;padding-left:20px}
table{border-collapse:collapse;font-size:0.9em}th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}thead th{border-bottom:2px solid #888}
.figure{min-height:440px;margin-top:18px}.js-error{color:#b00;font-weight:700}
"""

# Shown in the page if a plot fails to draw, so a broken sheet never looks merely empty.
_ERROR_HOOK = """
function tearsheetError(message){const p=document.createElement("p");p.className="js-error";
p.textContent="A plot failed to render: "+message;(document.body||document.documentElement).appendChild(p);}
window.addEventListener("error",e=>tearsheetError(e.message));
window.addEventListener("unhandledrejection",e=>tearsheetError(String(e.reason)));
"""

_LOADER = """
const sessions=JSON.parse(document.getElementById("sessions").textContent);
for(const div of document.querySelectorAll("div.figure")){
  const spec=JSON.parse(document.getElementById(div.id+"-data").textContent);
  for(const trace of spec.data){if(trace.meta==="sessions"){trace.x=sessions;}}
  Plotly.newPlot(div,spec.data,spec.layout,CONFIG);
}
"""


def _page(title: str, body: str, figures: Mapping[str, go.Figure], sessions: list[str], details: str) -> str:
    """The whole document: plotly.js once, the shared session dates, one div and JSON block per figure."""
    blocks = [
        f'<div class="figure" id="fig-{key}"></div>'
        f'<script type="application/json" id="fig-{key}-data">{pio.to_json(fig, validate=True)}</script>'
        for key, fig in figures.items()
    ]
    # json.dumps leaves no "<" in ISO dates, and pio.to_json writes "<" as \\u003c: no block can close its tag.
    data = f'<script type="application/json" id="sessions">{json.dumps(sessions)}</script>'
    loader = f"<script>const CONFIG={json.dumps(_PLOT_CONFIG)};{_LOADER}</script>"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style><script>{_ERROR_HOOK}</script>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>'
        f"<body>{body}<section><h2>Plots</h2>{''.join(blocks)}</section>{details}{data}{loader}</body></html>"
    )
