"""A slow, per-ticker, per-date oracle of the Alpha158-style features (tests only).

Written from the definitions (``feature_repo/schema.py`` and Qlib's ``Alpha158`` expressions), not
from the vectorised code: plain Python loops over each segment of each ticker's history and
numpy on each window (``np.polyfit``, ``np.corrcoef``, ``np.quantile``,
``scipy.stats.percentileofscore`` as Qlib's ``Rank`` uses it).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy.stats import percentileofscore

from feature_repo.schema import ALPHA_FEATURES, ALPHA_LIQUIDITY_WINDOWS, ALPHA_WINDOWS

EPS = 1e-12
NAN = float("nan")


def alpha_per_ticker(
    prices: pd.DataFrame, sessions: pd.DatetimeIndex, breaks: pd.DataFrame | None = None, max_gap: int = 5
) -> pd.DataFrame:
    """Every feature for every bar, ticker by ticker, segment by segment, date by date."""
    rows = []
    for ticker, bars in prices.sort_values("date").groupby("ticker", sort=True):
        cuts = [] if breaks is None else sorted(breaks.loc[breaks["ticker"] == ticker, "date"])
        bounds = [pd.Timestamp.min, *cuts, pd.Timestamp.max]
        for lo, hi in itertools.pairwise(bounds):
            seg = bars[(bars["date"] >= lo) & (bars["date"] < hi)]
            if len(seg):
                rows.extend(_segment(str(ticker), seg, sessions, max_gap))
    names = [s.name for s in ALPHA_FEATURES]
    return pd.DataFrame(rows, columns=["ticker", "date", *names])


def _segment(ticker: str, seg: pd.DataFrame, sessions: pd.DatetimeIndex, max_gap: int) -> list[list[object]]:
    days = sessions[(sessions >= seg["date"].min()) & (sessions <= seg["date"].max())]
    s = seg.set_index("date").reindex(days)
    n = len(days)
    present = s["adj_close"].notna().to_numpy()
    adj = s["adj_close"].to_numpy(dtype=float)
    close = _ffill(adj, max_gap)
    pos = {
        c: np.where(s[c].to_numpy(dtype=float) > 0, s[c].to_numpy(dtype=float), NAN) for c in ("open", "high", "low")
    }
    raw_close = np.where(s["close"].to_numpy(dtype=float) > 0, s["close"].to_numpy(dtype=float), NAN)
    factor = adj / raw_close
    o, h, low = (pos[c] * factor for c in ("open", "high", "low"))
    high = np.array(
        [
            max(h[i], o[i] if not math.isnan(o[i]) else -math.inf, adj[i]) if not math.isnan(h[i]) else NAN
            for i in range(n)
        ]
    )
    lowp = np.array(
        [
            min(low[i], o[i] if not math.isnan(o[i]) else math.inf, adj[i]) if not math.isnan(low[i]) else NAN
            for i in range(n)
        ]
    )
    raw_vol = s["volume"].to_numpy(dtype=float)
    value_src = s["traded_value"].to_numpy(dtype=float) if "traded_value" in s.columns else raw_close * raw_vol
    vol = _bridged(raw_vol, present, close)
    value = _bridged(value_src, present, close)
    whigh = np.where(np.isnan(high), close, high)
    wlow = np.where(np.isnan(lowp), close, lowp)
    out = []
    for t in range(n):
        if not present[t]:
            continue
        f: dict[str, float] = {}
        f.update(_kbar(o[t], high[t], lowp[t], adj[t]))
        f.update(_ratios(o[t], high[t], lowp[t], close[t]))
        for w in ALPHA_WINDOWS:
            f.update(_rolling(t, w, close=close, whigh=whigh, wlow=wlow, vol=vol))
        f.update(_liquidity(t, close, value, raw_close[t]))
        out.append([ticker, days[t], *(f[spec.name] for spec in ALPHA_FEATURES)])
    return out


def _ffill(x: np.ndarray, limit: int) -> np.ndarray:
    out, last, gap = x.copy(), NAN, 0
    for i, v in enumerate(x):
        if not math.isnan(v):
            last, gap = v, 0
        else:
            gap += 1
            out[i] = last if gap <= limit else NAN
    return out


def _bridged(x: np.ndarray, present: np.ndarray, close: np.ndarray) -> np.ndarray:
    out = np.full(len(x), NAN)
    for i in range(len(x)):
        if present[i]:
            out[i] = x[i] if x[i] >= 0 else NAN
        elif not math.isnan(close[i]):
            out[i] = 0.0
    return out


def _kbar(o: float, h: float, lo: float, c: float) -> dict[str, float]:
    top, bottom, spread = max(o, c), min(o, c), h - lo + EPS
    return {
        "kmid": (c - o) / o,
        "klen": (h - lo) / o,
        "kmid2": (c - o) / spread,
        "kup": (h - top) / o,
        "kup2": (h - top) / spread,
        "klow": (bottom - lo) / o,
        "klow2": (bottom - lo) / spread,
        "ksft": (2 * c - h - lo) / o,
        "ksft2": (2 * c - h - lo) / spread,
    }


def _ratios(o: float, h: float, lo: float, c: float) -> dict[str, float]:
    return {"open0": o / c, "high0": h / c, "low0": lo / c, "typ0": (h + lo + c) / 3 / c}


def _window(x: np.ndarray, t: int, w: int) -> np.ndarray | None:
    """x[t-w+1..t] when it exists and has no NaN."""
    if t - w + 1 < 0:
        return None
    win = x[t - w + 1 : t + 1]
    return None if np.isnan(win).any() else win


def _rolling(
    t: int, w: int, *, close: np.ndarray, whigh: np.ndarray, wlow: np.ndarray, vol: np.ndarray
) -> dict[str, float]:
    names = ["roc", "ma", "std", "beta", "rsqr", "resi", "max", "min", "qtlu", "qtld", "rank", "rsv", "imax", "imin"]
    names += ["imxd", "corr", "cord", "cntp", "cntn", "cntd", "sump", "sumn", "sumd", "vma", "vstd", "wvma"]
    names += ["vsump", "vsumn", "vsumd"]
    f = {f"{k}{w}": NAN for k in names}
    ct = close[t]
    if t - w >= 0:
        f[f"roc{w}"] = close[t - w] / ct
    c, hi, lo, v = _window(close, t, w), _window(whigh, t, w), _window(wlow, t, w), _window(vol, t, w)
    if c is not None:
        x = np.arange(1, w + 1, dtype=float)
        slope, intercept = np.polyfit(x, c, 1)
        sst = ((c - c.mean()) ** 2).sum()
        ssr = ((c - (slope * x + intercept)) ** 2).sum()
        f |= {
            f"ma{w}": c.mean() / ct,
            f"std{w}": c.std(ddof=1) / ct,
            f"beta{w}": slope / ct,
            f"rsqr{w}": 1 - ssr / sst if sst > 0 else NAN,
            f"resi{w}": (ct - (slope * w + intercept)) / ct,
            f"qtlu{w}": np.quantile(c, 0.8) / ct,
            f"qtld{w}": np.quantile(c, 0.2) / ct,
            f"rank{w}": percentileofscore(c, c[-1]) / 100,
        }
    if hi is not None and lo is not None:
        f |= {
            f"max{w}": hi.max() / ct,
            f"min{w}": lo.min() / ct,
            f"rsv{w}": (ct - lo.min()) / (hi.max() - lo.min() + EPS),
            f"imax{w}": (np.argmax(hi) + 1) / w,
            f"imin{w}": (np.argmin(lo) + 1) / w,
            f"imxd{w}": (np.argmax(hi) - np.argmin(lo)) / w,
        }
    f |= _changes(t, w, close, "sum") | _changes(t, w, vol, "vsum") | _counts(t, w, close)
    if c is not None and v is not None:
        f[f"corr{w}"] = _corr(c, np.log(v + 1))
        if v[-1] > 0:
            f[f"vma{w}"] = v.mean() / v[-1]
            f[f"vstd{w}"] = v.std(ddof=1) / v[-1]
    prev_c, prev_v = _window(close, t - 1, w) if t >= 1 else None, _window(vol, t - 1, w) if t >= 1 else None
    if c is not None and prev_c is not None and v is not None:
        move = np.abs(c / prev_c - 1) * v
        f[f"wvma{w}"] = move.std(ddof=1) / (move.mean() + EPS)
        if prev_v is not None and (prev_v > 0).all():
            f[f"cord{w}"] = _corr(c / prev_c, np.log(v / prev_v + 1))
    return f


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return NAN
    return float(np.clip(np.corrcoef(a, b)[0, 1], -1, 1))


def _changes(t: int, w: int, x: np.ndarray, prefix: str) -> dict[str, float]:
    span = _window(x, t, w + 1)
    if span is None:
        return {f"{prefix}{k}{w}": NAN for k in "pnd"}
    d = np.diff(span)
    total = np.abs(d).sum() + EPS
    up, down = d.clip(min=0).sum() / total, (-d).clip(min=0).sum() / total
    return {f"{prefix}p{w}": up, f"{prefix}n{w}": down, f"{prefix}d{w}": up - down}


def _counts(t: int, w: int, close: np.ndarray) -> dict[str, float]:
    span = _window(close, t, w + 1)
    if span is None:
        return {f"cnt{k}{w}": NAN for k in "pnd"}
    d = np.diff(span)
    p, n = float((d > 0).mean()), float((d < 0).mean())
    return {f"cntp{w}": p, f"cntn{w}": n, f"cntd{w}": p - n}


def _liquidity(t: int, close: np.ndarray, value: np.ndarray, raw_close: float) -> dict[str, float]:
    f: dict[str, float] = {}
    for w in ALPHA_LIQUIDITY_WINDOWS:
        win = _window(value, t, w)
        f[f"log_med_value_{w}"] = math.log1p(np.median(win)) if win is not None else NAN
    for w in ALPHA_LIQUIDITY_WINDOWS:
        impacts = []
        for i in range(max(0, t - w + 1), t + 1):
            if i >= 1 and value[i] > 0 and not math.isnan(close[i]) and not math.isnan(close[i - 1]):
                impacts.append(abs(close[i] / close[i - 1] - 1) / value[i] * 1e6)
        f[f"log_amihud_{w}"] = math.log1p(float(np.mean(impacts))) if len(impacts) >= w // 2 else NAN
    f["log_price"] = math.log(raw_close) if raw_close > 0 else NAN
    return f
