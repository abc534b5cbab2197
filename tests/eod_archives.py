"""SYNTHETIC per-day vendor files (ASX style) with defects planted on purpose, for tests.

The real thing is one headerless text file per trading day, ``CODE,YYYYMMDD,open,high,low,close,
volume`` with prices written like ``.33``, often packed in yearly zip archives
(``2008/20080102.txt``). These helpers build such files from a pandas frame, so a test states its
data as a frame, plants a defect with one call, and writes the files into ``tmp_path``:

    bars = synthetic_bars(["AAA", "BBB"], sessions=5)
    files = day_files(halt(bars, "AAA", "2024-01-03"))
    write_zip(tmp_path / "2024.zip", empty_day(files, "2024-01-08"))

Nothing here is real market data; every frame is generated from a seed.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ("code", "date", "open", "high", "low", "close", "volume")
INDEX_CODES = ("XJO",)


def synthetic_bars(
    codes: Sequence[str] = ("AAA", "BBB", "CCC"),
    *,
    sessions: int = 5,
    start: str = "2024-01-02",
    index_codes: Sequence[str] = INDEX_CODES,
    seed: int = 0,
) -> pd.DataFrame:
    """SYNTHETIC daily bars for ``codes`` and index rows (volume 0) on ``sessions`` weekdays.

    Prices are a random walk from 0.30 to 40 (so some are written like ``.33``); each bar holds
    its open and close within [low, high].
    """
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(start, periods=sessions)
    frames = []
    for i, code in enumerate([*codes, *index_codes]):
        index = code in index_codes
        level = 5000.0 if index else [0.33, 4.2, 38.5][i % 3]
        close = np.round(level * np.exp(np.cumsum(rng.normal(0, 0.02, sessions))), 1 if index else 3)
        open_ = np.round(close * (1 + rng.normal(0, 0.005, sessions)), 1 if index else 3)
        high = np.maximum(open_, close) + (1.0 if index else 0.005)
        low = np.minimum(open_, close) - (1.0 if index else 0.001)
        volume = np.zeros(sessions) if index else rng.integers(1_000, 1_000_000, sessions).astype(float)
        frames.append(
            pd.DataFrame(
                {"code": code, "date": days, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
            )
        )
    return pd.concat(frames, ignore_index=True).sort_values(["date", "code"], ignore_index=True)


def vendor_number(value: float) -> str:
    """A price as the vendor writes it: ``0.33`` -> ``.33``, ``0`` -> ``.00``, ``12.5`` -> ``12.5``."""
    text = f"{value:.4f}".rstrip("0").rstrip(".") if value else ".00"
    return text[1:] if text.startswith("0.") else text


def day_files(frame: pd.DataFrame, *, folder: str | None = "{year}") -> dict[str, str]:
    """One text per day: member name (``2024/20240102.txt``) -> the day's lines, codes in order.

    Args:
        frame: bars with :data:`COLUMNS`.
        folder: the folder of each member, ``{year}`` filled in; None puts files at the top.
    """
    texts: dict[str, str] = {}
    for day, rows in frame.sort_values(["date", "code"]).groupby("date", sort=True):
        stamp = pd.Timestamp(str(day)).strftime("%Y%m%d")
        lines = [
            ",".join([str(r.code), stamp, *(vendor_number(getattr(r, c)) for c in COLUMNS[2:6]), f"{r.volume:.0f}"])
            for r in rows.itertuples()
        ]
        name = f"{stamp}.txt" if folder is None else f"{folder.format(year=stamp[:4])}/{stamp}.txt"
        texts[name] = "\n".join(lines) + "\n"
    return texts


def write_zip(path: Path, files: Mapping[str, str]) -> Path:
    """Writes ``files`` (member name -> text) into a new zip archive at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def write_folder(path: Path, files: Mapping[str, str]) -> Path:
    """Writes ``files`` (relative name -> text) under the folder ``path``."""
    for name, text in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return path


def member_of(files: Mapping[str, str], day: str) -> str:
    """The member name holding ``day`` (``2024-01-03``)."""
    stamp = pd.Timestamp(day).strftime("%Y%m%d")
    [name] = [n for n in files if stamp in n]
    return name


# --- defects -------------------------------------------------------------------------------------


def halt(frame: pd.DataFrame, code: str, day: str) -> pd.DataFrame:
    """A trading halt: open, high and low written as 0, the close kept."""
    out = frame.copy()
    at = (out["code"] == code) & (out["date"] == pd.Timestamp(day))
    out.loc[at, ["open", "high", "low"]] = 0.0
    return out


def with_options(frame: pd.DataFrame, codes: Sequence[str] = ("AAAZZ1", "BBBKOA", "CCCR")) -> pd.DataFrame:
    """Adds rows of options, warrants and rights (codes of 4+ characters) on every day."""
    base = frame[~frame["code"].isin(INDEX_CODES)].groupby("date", as_index=False).first()
    extra = [base.assign(code=code, close=base["close"] / 10, open=base["open"] / 10) for code in codes]
    for rows in extra:
        rows["high"], rows["low"] = rows[["open", "close"]].max(axis=1), rows[["open", "close"]].min(axis=1)
    return pd.concat([frame, *extra], ignore_index=True)


def bad_open(frame: pd.DataFrame, code: str, day: str, factor: float = 1.02) -> pd.DataFrame:
    """An open above the day's high (normal for an index, whose open is not a trade)."""
    out = frame.copy()
    at = (out["code"] == code) & (out["date"] == pd.Timestamp(day))
    out.loc[at, "open"] = out.loc[at, "high"] * factor
    return out


def zero_close(frame: pd.DataFrame, code: str, day: str) -> pd.DataFrame:
    """A row with every price 0: no trade and no price that day."""
    out = frame.copy()
    at = (out["code"] == code) & (out["date"] == pd.Timestamp(day))
    out.loc[at, ["open", "high", "low", "close"]] = 0.0
    return out


def empty_day(files: Mapping[str, str], day: str, *, folder: str | None = "{year}") -> dict[str, str]:
    """Adds an empty file for ``day`` (a holiday, or a day the vendor had no data)."""
    stamp = pd.Timestamp(day).strftime("%Y%m%d")
    name = f"{stamp}.txt" if folder is None else f"{folder.format(year=stamp[:4])}/{stamp}.txt"
    return {**files, name: ""}


def replace_line(files: Mapping[str, str], member: str, line: int, text: str) -> dict[str, str]:
    """Replaces line ``line`` (1-based) of ``member`` with ``text`` (a malformed line, say)."""
    lines = files[member].split("\n")
    lines[line - 1] = text
    return {**files, member: "\n".join(lines)}


def insert_line(files: Mapping[str, str], member: str, line: int, text: str) -> dict[str, str]:
    """Inserts ``text`` so that it becomes line ``line`` (1-based) of ``member``."""
    lines = files[member].split("\n")
    lines.insert(line - 1, text)
    return {**files, member: "\n".join(lines)}
