"""Synthetic ASX-like market data, for SCALE TESTS and edge cases ONLY.

Nothing in this module is real. Prices, the benchmark, fundamentals and announcements are drawn from
a seeded random model (a market factor, eleven sector factors and fat-tailed idiosyncratic noise) so
that ingestion, the offline store, feature transforms and data health checks can be exercised at
production size (2,400 tickers x 36 months, about 1.8M price rows, in a few seconds) and on defects
planted on purpose (:func:`training.ingest.synthetic_defects.inject_defects`).

No quality figure (information coefficient, hit rate, Sharpe ratio, accuracy, backtest return, ...)
may be computed on this data or reported from it: the model has no exploitable signal by design and
any number measured on it says nothing about a model. Every row carries ``synthetic=True`` and
``source="synthetic"`` so that downstream code can refuse it.

Frames follow the column contracts of :mod:`feature_repo.tables`. The data is clean by default
(no gaps, no corporate actions, so ``adj_close == close``); defects are only ever added by
:func:`training.ingest.synthetic_defects.inject_defects`.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_repo import tables as t
from training.errors import TrainingError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
DateArray = npt.NDArray[np.datetime64]

SYNTHETIC_SOURCE: Final = "synthetic"
BENCHMARK_SYMBOL: Final = "SYNTH_INDEX"
SCORE_MODEL_VERSION: Final = "synthetic"
SECTORS: Final[tuple[str, ...]] = (
    "Materials", "Financials", "Health Care", "Information Technology", "Energy", "Industrials",
    "Consumer Discretionary", "Communication Services", "Real Estate", "Consumer Staples", "Utilities",
)  # fmt: skip
# Share of ASX listings per sector (by count, not by weight): many small miners and explorers.
_SECTOR_SHARE: Final = np.array([0.33, 0.10, 0.09, 0.08, 0.08, 0.08, 0.07, 0.04, 0.05, 0.04, 0.04])
_SECTOR_WORD: Final = (
    "Resources", "Capital", "Health", "Technologies", "Energy", "Industries",
    "Brands", "Media", "Property", "Foods", "Power",
)  # fmt: skip
_MONTHS: Final = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_N_CODES: Final = 26**3
_CODE_STRIDE: Final = 7919  # prime, coprime with 26**3, so i -> i * stride mod 26**3 is one-to-one
_T_DOF: Final = 5.0  # Student-t degrees of freedom of every shock: fat tails, finite kurtosis
_SHOCK_CLIP: Final = 5.0  # shocks are winsorised at this many standard deviations
# Clean data stays clean: no daily move beyond the health checks' +-35% outlier bound (log 0.29 is
# +34% / -25%), and nothing close to a split ratio (x2 is log 0.69).
_MAX_ABS_LOG_RETURN: Final = 0.29
_MARKET_VOL: Final = 0.009  # daily
_MARKET_DRIFT: Final = 0.0003  # daily log drift
_SECTOR_VOL: Final = 0.007  # daily
_CAP_RANGE: Final = (5e6, 2e11)  # A$, micro-cap explorer to BHP
_SYDNEY_UTC_OFFSET_H: Final = 10  # AEST; daylight saving is ignored
_DOCS_PER_TICKER_PER_YEAR: Final = 20.0  # generate_universe's default announcement rate


class SyntheticDataError(TrainingError, ValueError):
    """The generator was asked for something it cannot produce (bad size, seed or input frame)."""


@dataclass(frozen=True)
class SyntheticUniverse:
    """One generated universe: four frames in the :mod:`feature_repo.tables` contracts.

    Attributes:
        prices: daily bars (``PRICE_COLUMNS``), sorted by ticker then date.
        benchmark: the cap-weighted ``SYNTH_INDEX`` level (``BENCHMARK_COLUMNS``).
        fundamentals: quarterly reports (``FUNDAMENTAL_COLUMNS``), visible from ``report_date``.
        documents: announcements (``DOCUMENT_COLUMNS``), sorted by ticker then ``published_at``.
        sectors: each ticker's sector (index ``ticker``); not a contract table, for tests only.
    """

    prices: pd.DataFrame
    benchmark: pd.DataFrame
    fundamentals: pd.DataFrame
    documents: pd.DataFrame
    sectors: pd.Series


@dataclass(frozen=True)
class _Profiles:
    """Per-ticker parameters, one array entry per ticker."""

    smallness: FloatArray  # 0 = largest possible cap, 1 = smallest
    sector: IntArray
    beta: FloatArray
    sector_loading: FloatArray
    idio_vol: FloatArray  # daily
    drift: FloatArray  # daily log drift on top of the market's
    price0: FloatArray  # close of the session before the first
    shares: FloatArray
    turnover: FloatArray  # share of the register traded on an average day

    @property
    def total_vol(self) -> FloatArray:
        market = self.beta * _MARKET_VOL
        sector = self.sector_loading * _SECTOR_VOL
        return np.sqrt(market**2 + sector**2 + self.idio_vol**2)


@dataclass(frozen=True)
class _Bars:
    """Simulated OHLCV, each array shaped (tickers, sessions)."""

    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray


def generate_universe(
    n_tickers: int = 2400,
    n_months: int = 36,
    seed: int = 0,
    start: str | pd.Timestamp = "2022-01-03",
    n_docs_per_ticker_per_year: float = 20.0,
) -> SyntheticUniverse:
    """Generate a clean synthetic ASX-like universe (scale tests only; see the module docstring).

    Args:
        n_tickers: number of three-letter tickers (at most 26**3).
        n_months: calendar months of sessions from ``start`` (about 21 sessions a month).
        seed: the same seed gives identical frames; prices, fundamentals and documents use
            independent streams, so changing the document rate leaves prices unchanged.
        start: first calendar day of the window.
        n_docs_per_ticker_per_year: mean announcement count per ticker per year (Poisson).

    Raises:
        SyntheticDataError: a size, rate or seed out of range.
    """
    _check_args(n_tickers, n_months, seed, n_docs_per_ticker_per_year)
    price_rng, fund_rng, doc_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    dates = session_dates(start, n_months)
    tickers = ticker_codes(n_tickers)
    profiles = _draw_profiles(price_rng, n_tickers)
    bars = _simulate_bars(price_rng, profiles, len(dates))
    rate = n_docs_per_ticker_per_year * n_months / 12
    sector_names = np.asarray(SECTORS, dtype=object)[profiles.sector]
    return SyntheticUniverse(
        prices=_price_frame(tickers, dates, bars),
        benchmark=_benchmark_frame(dates, bars.close, profiles),
        fundamentals=_fundamentals_frame(fund_rng, tickers, profiles, dates, bars.close),
        documents=_documents_frame(doc_rng, tickers, profiles.sector, dates, rate),
        sectors=pd.Series(sector_names, index=pd.Index(tickers, name=t.TICKER), name="sector"),
    )


def _check_args(n_tickers: int, n_months: int, seed: int, docs_rate: float) -> None:
    if not 1 <= n_tickers <= _N_CODES:
        raise SyntheticDataError(f"n_tickers must be in [1, {_N_CODES}], got {n_tickers}")
    if n_months < 1:
        raise SyntheticDataError(f"n_months must be at least 1, got {n_months}")
    if seed < 0:
        raise SyntheticDataError(f"seed must be non-negative, got {seed}")
    if not docs_rate >= 0:
        raise SyntheticDataError(f"n_docs_per_ticker_per_year must be >= 0, got {docs_rate}")


def session_dates(start: str | pd.Timestamp, n_months: int) -> pd.DatetimeIndex:
    """Weekdays in ``[start, start + n_months)`` less the ASX's national holidays (midnight, ns)."""
    first = pd.Timestamp(start).normalize()
    days = pd.bdate_range(first, first + pd.DateOffset(months=n_months), inclusive="left")
    return days[~days.isin(_asx_holidays(range(first.year, days[-1].year + 1)))].as_unit("ns")


def _asx_holidays(years: range) -> pd.DatetimeIndex:
    """New Year, Australia Day, Good Friday, Easter Monday, Anzac Day, King's Birthday, Christmas.

    Fixed-date holidays are not moved off weekends; that is close enough for synthetic sessions.
    """
    days: list[pd.Timestamp] = []
    for year in years:
        easter = _easter_sunday(year)
        june_first = pd.Timestamp(year=year, month=6, day=1)
        kings_birthday = june_first + pd.Timedelta(days=(7 - june_first.weekday()) % 7 + 7)
        days += [pd.Timestamp(year=year, month=m, day=d) for m, d in ((1, 1), (1, 26), (4, 25), (12, 25), (12, 26))]
        days += [easter - pd.Timedelta(days=2), easter + pd.Timedelta(days=1), kings_birthday]
    return pd.DatetimeIndex(days)


def _easter_sunday(year: int) -> pd.Timestamp:
    """Gregorian Easter Sunday (the anonymous 'Meeus/Jones/Butcher' algorithm)."""
    golden, century, rest = year % 19, year // 100, year % 100
    leap_skip, correction = century // 4, (century + 8) // 25
    epact = (19 * golden + century - leap_skip - (century - correction + 1) // 3 + 15) % 30
    weekday = (32 + 2 * (century % 4) + 2 * (rest // 4) - epact - rest % 4) % 7
    shift = (golden + 11 * epact + 22 * weekday) // 451
    month, day = divmod(epact + weekday - 7 * shift + 114, 31)
    return pd.Timestamp(year=year, month=month, day=day + 1)


def ticker_codes(n_tickers: int) -> npt.NDArray[np.object_]:
    """``n_tickers`` unique, sorted three-letter codes; the same for every seed."""
    index = (np.arange(n_tickers, dtype=np.int64) * _CODE_STRIDE + 5281) % _N_CODES
    letters = np.stack([index // 676, index // 26 % 26, index % 26], axis=1) + ord("A")
    codes = sorted(bytes(row.tolist()).decode("ascii") for row in letters.astype(np.uint8))
    return np.asarray(codes, dtype=object)


def _draw_profiles(rng: np.random.Generator, n: int) -> _Profiles:
    """Market caps log-normal around A$60M; small caps are cheaper per share and far more volatile."""
    low, high = np.log(_CAP_RANGE[0]), np.log(_CAP_RANGE[1])
    log_cap = np.clip(rng.normal(np.log(6e7), 2.0, n), low, high)
    smallness = (high - log_cap) / (high - low)
    log_price = np.clip(rng.normal(-3.0 + 6.7 * (1 - smallness), 0.8), np.log(0.005), np.log(300.0))
    price0 = np.exp(log_price)
    annual_idio = (0.15 + 0.55 * smallness**2) * np.exp(rng.normal(0.0, 0.15, n))
    return _Profiles(
        smallness=smallness,
        sector=rng.choice(len(SECTORS), n, p=_SECTOR_SHARE / _SECTOR_SHARE.sum()).astype(np.int64),
        beta=np.clip(rng.normal(1.0, 0.25, n), 0.3, 1.8),
        sector_loading=np.clip(rng.normal(1.0, 0.3, n), 0.2, 2.0),
        idio_vol=annual_idio / np.sqrt(252.0),
        drift=rng.normal(0.0, 0.10, n) / 252.0,
        price0=price0,
        shares=np.round(np.exp(log_cap) / price0),
        turnover=np.exp(rng.normal(np.log(0.002), 0.6, n)),
    )


def _student_t(rng: np.random.Generator, size: int | tuple[int, ...]) -> FloatArray:
    """Student-t draws scaled to unit variance, winsorised at ``_SHOCK_CLIP``."""
    draws: FloatArray = rng.standard_t(_T_DOF, size)
    draws *= np.sqrt((_T_DOF - 2.0) / _T_DOF)
    return np.clip(draws, -_SHOCK_CLIP, _SHOCK_CLIP, out=draws)


def _log_returns(rng: np.random.Generator, prof: _Profiles, n_sessions: int) -> FloatArray:
    """Daily log returns (tickers, sessions): beta * market + loading * sector + idiosyncratic."""
    market = _MARKET_DRIFT + _MARKET_VOL * _student_t(rng, n_sessions)
    sectors = _SECTOR_VOL * _student_t(rng, (len(SECTORS), n_sessions))
    returns = _student_t(rng, (prof.beta.size, n_sessions))
    returns *= prof.idio_vol[:, None]
    returns += prof.drift[:, None]
    returns += prof.beta[:, None] * market[None, :]
    returns += prof.sector_loading[:, None] * sectors[prof.sector]
    return np.clip(returns, -_MAX_ABS_LOG_RETURN, _MAX_ABS_LOG_RETURN, out=returns)


def _simulate_bars(rng: np.random.Generator, prof: _Profiles, n_sessions: int) -> _Bars:
    """Consistent OHLCV: low <= min(open, close) <= max(open, close) <= high, volume >= 1."""
    log_ret = _log_returns(rng, prof, n_sessions)
    sigma = prof.total_vol[:, None]
    shape = log_ret.shape
    log_close = np.cumsum(log_ret, axis=1)
    log_close += np.log(prof.price0)[:, None]
    log_open = np.empty_like(log_close)
    log_open[:, 0] = np.log(prof.price0)
    log_open[:, 1:] = log_close[:, :-1]
    log_open += 0.3 * sigma * rng.standard_normal(shape)
    close, open_ = np.exp(log_close), np.exp(log_open)
    # exp(-|x|) <= 1 and float rounding is monotone, so the ordering holds exactly.
    high = np.maximum(open_, close) * np.exp(0.4 * sigma * np.abs(rng.standard_normal(shape)))
    low = np.minimum(open_, close) * np.exp(-0.4 * sigma * np.abs(rng.standard_normal(shape)))
    activity = np.exp(rng.normal(0.0, 0.4, shape)) * (0.5 + np.abs(log_ret) / sigma)
    volume = np.maximum(np.rint((prof.shares * prof.turnover)[:, None] * activity), 1.0)
    return _Bars(open=open_, high=high, low=low, close=close, volume=volume)


def _provenance(n_rows: int) -> dict[str, npt.NDArray[np.object_] | npt.NDArray[np.bool_]]:
    return {
        t.SOURCE: np.full(n_rows, SYNTHETIC_SOURCE, dtype=object),
        t.SYNTHETIC: np.ones(n_rows, dtype=bool),
    }


def _price_frame(tickers: npt.NDArray[np.object_], dates: pd.DatetimeIndex, bars: _Bars) -> pd.DataFrame:
    n_rows = bars.close.size
    columns = {
        t.TICKER: np.repeat(tickers, len(dates)),
        t.DATE: np.tile(dates.to_numpy(), len(tickers)),
        "open": bars.open.ravel(),
        "high": bars.high.ravel(),
        "low": bars.low.ravel(),
        "close": bars.close.ravel(),
        "adj_close": bars.close.ravel(),
        "volume": bars.volume.ravel(),
        **_provenance(n_rows),
    }
    return pd.DataFrame(columns, columns=list(t.PRICE_COLUMNS))


def _benchmark_frame(dates: pd.DatetimeIndex, close: FloatArray, prof: _Profiles) -> pd.DataFrame:
    """Cap-weighted price index of the whole universe, 1000 on the session before the first."""
    level = 1000.0 * (prof.shares @ close) / float(prof.shares @ prof.price0)
    symbol = np.full(len(dates), BENCHMARK_SYMBOL, dtype=object)
    columns = {"symbol": symbol, t.DATE: dates.to_numpy(), "close": level, **_provenance(len(dates))}
    return pd.DataFrame(columns, columns=list(t.BENCHMARK_COLUMNS))


def _quarter_close(dates: pd.DatetimeIndex, close: FloatArray, prof: _Profiles, ends: pd.DatetimeIndex) -> FloatArray:
    """Close on the last session at or before each quarter end (the first open for earlier quarters)."""
    index = np.searchsorted(dates.to_numpy(), ends.to_numpy(), side="right") - 1
    on_or_before = close[:, np.maximum(index, 0)]
    return np.where(index[None, :] >= 0, on_or_before, prof.price0[:, None])


def _fundamentals_frame(
    rng: np.random.Generator,
    tickers: npt.NDArray[np.object_],
    prof: _Profiles,
    dates: pd.DatetimeIndex,
    close: FloatArray,
) -> pd.DataFrame:
    """Quarterly reports from a year before the window to its end, scaled on the market cap.

    Small caps dilute (placements) and tend to lose money; everything else is noise around
    per-ticker ratios (price/sales, price/book, debt/equity), so magnitudes track price x shares.
    """
    ends = pd.date_range(dates[0] - pd.DateOffset(months=12), dates[-1], freq="QE").as_unit("ns")
    n, q = len(tickers), len(ends)
    col = (n, 1)
    issuance = np.maximum(rng.normal(0.03 * prof.smallness[:, None] - 0.01, 0.02, (n, q)), 0.0)
    shares = np.round(prof.shares[:, None] * np.exp(np.cumsum(issuance, axis=1)))
    cap = shares * _quarter_close(dates, close, prof, ends)
    revenue = cap * np.exp(rng.normal(np.log(0.5) - 2.0 * prof.smallness[:, None], 0.8, col)) / 4
    revenue *= np.exp(rng.normal(0.0, 0.1, (n, q)))
    margin = rng.normal(0.12 - 0.35 * prof.smallness[:, None], 0.1, col) + rng.normal(0.0, 0.06, (n, q))
    net_income = revenue * margin
    equity = cap / np.exp(rng.normal(np.log(1.8), 0.5, col)) * np.exp(rng.normal(0.0, 0.05, (n, q)))
    debt = equity * np.exp(rng.normal(np.log(0.35), 0.9, col)) * np.exp(rng.normal(0.0, 0.05, (n, q)))
    values = {
        "revenue": revenue,
        "net_income": net_income,
        "operating_cash_flow": net_income + revenue * rng.normal(0.06, 0.05, (n, q)),
        "total_assets": (equity + debt) * (1.0 + rng.uniform(0.1, 0.6, col)),
        "total_equity": equity,
        "total_debt": debt,
        "shares_outstanding": shares,
    }
    lag = rng.integers(20, 61, (n, q)).astype("timedelta64[D]")
    period_end = np.tile(ends.to_numpy(), n)
    columns = {
        t.TICKER: np.repeat(tickers, q),
        "period_end": period_end,
        "report_date": period_end + lag.ravel(),
    }
    columns |= {name: np.round(v).ravel() for name, v in values.items()}
    return pd.DataFrame(columns | _provenance(n * q), columns=list(t.FUNDAMENTAL_COLUMNS))


@dataclass(frozen=True)
class _Template:
    """An announcement template; ``tone`` (-1, 0, +1) drives :func:`scored_documents`."""

    title: str
    body: str
    tone: int
    weight: float

    def title_pattern(self) -> str:
        """A regex matching every title this template renders."""
        parts = string.Formatter().parse(self.title)
        return "".join(re.escape(text) + (".+?" if field is not None else "") for text, field, _, _ in parts)


# (title, body, tone, relative frequency); bodies follow "<name> (ASX: <ticker>) " when rendered.
TEMPLATES: Final[tuple[_Template, ...]] = tuple(
    _Template(*row)
    for row in (
        ("{ticker} reports half-year revenue up {pct}%",
         "reported half-year revenue up {pct}% on the prior corresponding period on {day}.", 1, 5.0),
        ("{ticker} reports half-year revenue down {pct}%",
         "reported half-year revenue down {pct}% on the prior corresponding period on {day}.", -1, 4.0),
        ("Appendix 4C quarterly cashflow report",
         "lodged its Appendix 4C quarterly cashflow report on {day}; cash at bank A${amount}m.", 0, 12.0),
        ("Change of Director's Interest Notice",
         "advises a change of {pct},000 ordinary shares in a director's interest on {day}.", 0, 20.0),
        ("Trading Halt",
         "requested a trading halt on {day} pending an announcement about a capital raising.", 0, 8.0),
        ("{ticker} upgrades FY guidance",
         "now expects FY EBITDA of A${amount}m, {pct}% above prior guidance, it said on {day}.", 1, 4.0),
        ("{ticker} downgrades FY guidance",
         "now expects FY EBITDA of A${amount}m, {pct}% below prior guidance, it said on {day}.", -1, 4.0),
        ("Quarterly Activities Report", "released its quarterly activities report on {day}.", 0, 12.0),
        ("{ticker} completes A${amount}m placement",
         "received firm commitments on {day} for a A${amount}m placement at a {pct}% discount.", 0, 8.0),
        ("{ticker} announces record quarterly production",
         "achieved record quarterly production, up {pct}% on the previous quarter, on {day}.", 1, 5.0),
        ("{ticker} flags A${amount}m impairment",
         "expects a non-cash impairment of A${amount}m in its accounts, it said on {day}.", -1, 3.0),
        ("Response to ASX Price Query",
         "responded on {day} to an ASX price query and is not aware of undisclosed information.", 0, 6.0),
        ("Notice of Annual General Meeting", "gives notice of its AGM, dated {day}.", 0, 6.0),
    )
)  # fmt: skip


def document_id(title: str, body: str) -> str:
    """sha256 hex of the normalised (lower-cased, whitespace-collapsed) title, a newline and body."""
    text = " ".join(title.lower().split()) + "\n" + " ".join(body.lower().split())
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _publication_times(rng: np.random.Generator, dates: pd.DatetimeIndex, n_docs: int) -> DateArray:
    """UTC nanoseconds: mostly sessions during Sydney market hours, some pre-open, evenings, weekends."""
    calendar = pd.date_range(dates[0], dates[-1], freq="D").as_unit("ns").to_numpy()
    sessions = dates.to_numpy()
    on_session = rng.random(n_docs) < 0.9
    day = np.where(
        on_session,
        sessions[rng.integers(0, sessions.size, n_docs)],
        calendar[rng.integers(0, calendar.size, n_docs)],
    )
    # Local windows: market hours, pre-open, evening, overnight (20:00 to 07:30 the next day).
    starts_h, widths_h = np.array([10.0, 7.5, 16.0, 20.0]), np.array([6.0, 2.5, 4.0, 11.5])
    window = rng.choice(4, n_docs, p=[0.6, 0.25, 0.1, 0.05])
    local_s = np.floor((starts_h[window] + widths_h[window] * rng.random(n_docs)) * 3600).astype(np.int64)
    utc: DateArray = day + local_s.astype("timedelta64[s]") - np.timedelta64(_SYDNEY_UTC_OFFSET_H, "h")
    return utc


def _documents_frame(
    rng: np.random.Generator,
    tickers: npt.NDArray[np.object_],
    sector: IntArray,
    dates: pd.DatetimeIndex,
    docs_per_ticker: float,
) -> pd.DataFrame:
    """Templated announcements, Poisson-many per ticker, sorted by ticker then time."""
    owner = np.repeat(np.arange(tickers.size), rng.poisson(docs_per_ticker, tickers.size))
    n_docs = owner.size
    published = _publication_times(rng, dates, n_docs)
    published = published[np.lexsort((published.view(np.int64), owner))]  # owner is sorted already
    weights = np.array([tpl.weight for tpl in TEMPLATES])
    kind = rng.choice(len(TEMPLATES), n_docs, p=weights / weights.sum())
    pct = rng.integers(2, 41, n_docs)
    amount = np.exp(rng.normal(np.log(5.0), 1.2, n_docs)).round(1)
    names = np.asarray(
        [f"{c.capitalize()} {_SECTOR_WORD[s]} Limited" for c, s in zip(tickers, sector, strict=True)],
        dtype=object,
    )
    local_day = pd.DatetimeIndex(published + np.timedelta64(_SYDNEY_UTC_OFFSET_H, "h"))
    titles, bodies = _render(
        kind, tickers=tickers[owner], names=names[owner], pct=pct, amount=amount, local_day=local_day
    )
    columns = {
        "doc_id": np.asarray([document_id(a, b) for a, b in zip(titles, bodies, strict=True)], dtype=object),
        t.TICKER: tickers[owner],
        "published_at": pd.DatetimeIndex(published).tz_localize("UTC"),
        t.SOURCE: np.full(n_docs, SYNTHETIC_SOURCE, dtype=object),
        "title": np.asarray(titles, dtype=object),
        "body": np.asarray(bodies, dtype=object),
        t.SYNTHETIC: np.ones(n_docs, dtype=bool),
    }
    return pd.DataFrame(columns, columns=list(t.DOCUMENT_COLUMNS))


def announcements_for(
    tickers: Sequence[str],
    dates: pd.DatetimeIndex,
    *,
    seed: int = 0,
    rate: float | None = None,
) -> pd.DataFrame:
    """The generator's SYNTHETIC announcements for given tickers and sessions (e.g. real ones).

    Lets the text pipeline run on the real tickers and dates of the bundled S&P 500 sample
    while every document stays flagged ``synthetic=True``, ``source="synthetic"``. The texts
    come from the ASX-style templates, so bodies read "<Code> <Sector word> Limited (ASX:
    <ticker>) ..."; the sector is a PLACEHOLDER drawn at random per ticker (with the
    generator's sector shares), not the company's sector, and publication times follow
    Sydney market hours as everywhere in this generator.

    Args:
        tickers: the tickers; stripped, upper-cased, de-duplicated and sorted.
        dates: the sessions (midnight, no timezone; sorted and de-duplicated here);
            announcements fall on them and on the calendar days between them.
        seed: the same seed, tickers and dates give an identical frame.
        rate: mean announcements per ticker per calendar year (Poisson); ``None`` uses
            :func:`generate_universe`'s default of 20.

    Returns:
        ``DOCUMENT_COLUMNS`` sorted by ticker then ``published_at`` (UTC).

    Raises:
        SyntheticDataError: no tickers or dates, an empty ticker, a negative rate or seed.
    """
    per_year = _DOCS_PER_TICKER_PER_YEAR if rate is None else rate
    codes = sorted({str(code).strip().upper() for code in tickers})
    if not codes or "" in codes:
        raise SyntheticDataError(f"tickers must be non-empty text, got {list(tickers)[:5]!r}")
    if len(dates) == 0:
        raise SyntheticDataError("dates must hold at least one session")
    if seed < 0 or not per_year >= 0:
        raise SyntheticDataError(f"seed and rate must be non-negative, got seed={seed}, rate={rate}")
    sessions = pd.DatetimeIndex(dates).tz_localize(None).normalize().unique().sort_values().as_unit("ns")
    sector_rng, doc_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    sector = sector_rng.choice(len(SECTORS), len(codes), p=_SECTOR_SHARE / _SECTOR_SHARE.sum()).astype(np.int64)
    years = ((sessions[-1] - sessions[0]).days + 1) / 365.25
    return _documents_frame(doc_rng, np.asarray(codes, dtype=object), sector, sessions, per_year * years)


def _render(
    kind: IntArray,
    *,
    tickers: npt.NDArray[np.object_],
    names: npt.NDArray[np.object_],
    pct: IntArray,
    amount: FloatArray,
    local_day: pd.DatetimeIndex,
) -> tuple[list[str], list[str]]:
    """Fill the templates; every body ends with a reference unique to the document, so ids are unique."""
    titles: list[str] = []
    bodies: list[str] = []
    rows = zip(kind.tolist(), tickers.tolist(), names.tolist(), pct.tolist(), amount.tolist(), strict=True)
    days = zip(local_day.day.tolist(), local_day.month.tolist(), local_day.year.tolist(), strict=True)
    for i, ((k, ticker, name, p, a), (d, m, y)) in enumerate(zip(rows, days, strict=True)):
        tpl = TEMPLATES[k]
        values = {"ticker": ticker, "pct": p, "amount": f"{a:.1f}", "day": f"{d} {_MONTHS[m - 1]} {y}"}
        titles.append(tpl.title.format(**values))
        bodies.append(f"{name} (ASX: {ticker}) {tpl.body.format(**values)} Reference {ticker}-{i:07d}.")
    return titles, bodies


def _title_tones(titles: pd.Series) -> FloatArray:
    """The tone of the template each title came from (0 for titles no template made)."""
    tone = np.zeros(len(titles))
    for tpl in TEMPLATES:
        if tpl.tone:
            tone[titles.str.fullmatch(tpl.title_pattern()).to_numpy(dtype=bool, na_value=False)] = tpl.tone
    return tone


def scored_documents(documents: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Fake text-model scores for ``documents`` (``SCORED_DOCUMENT_COLUMNS``), for feature test fixtures.

    Probabilities lean towards the tone of the template a title came from, plus noise; they sum to 1
    and ``score = p_positive - p_negative``. ``model_version`` is ``"synthetic"``.
    """
    rng = np.random.default_rng(seed)
    tone = _title_tones(documents["title"])
    logits = np.column_stack([-2.0 * tone, np.zeros_like(tone), 2.0 * tone])
    logits += rng.normal(0.0, 0.8, logits.shape)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    frame = documents.loc[:, ["doc_id", t.TICKER, "published_at"]].reset_index(drop=True)
    frame["p_negative"], frame["p_neutral"], frame["p_positive"] = probs[:, 0], probs[:, 1], probs[:, 2]
    frame["score"] = probs[:, 2] - probs[:, 0]
    frame["model_version"] = SCORE_MODEL_VERSION
    return frame.loc[:, list(t.SCORED_DOCUMENT_COLUMNS)]
