"""Column contracts of the raw tables that feature transforms read.

Ingestion (``training.ingest``) writes frames in exactly these shapes and the
transforms in ``feature_repo.transforms`` read them, so the contract lives here,
in the package every other package may import.

Conventions shared by every table:

* ``ticker`` is an upper-case string (``"AAPL"``, ``"BHP.AX"``).
* ``date`` is a session date (``datetime64[ns]`` at midnight, no timezone): the
  bar of that session, known after its close.
* ``synthetic`` is ``True`` on every row a generator made; real data is ``False``.
* ``source`` names where a row came from (``"skfolio.sp500"``, ``"csv:/path"``,
  ``"eodhd"``, ``"synthetic"``).
"""

from __future__ import annotations

from typing import Final

TICKER: Final = "ticker"
DATE: Final = "date"
SOURCE: Final = "source"
SYNTHETIC: Final = "synthetic"

# Daily bars. ``adj_close`` is split- and dividend-adjusted; returns are always
# computed from it. ``open``/``high``/``low``/``volume`` may be missing (NaN)
# for close-only sources such as the bundled skfolio prices.
PRICE_COLUMNS: Final[tuple[str, ...]] = (
    TICKER,
    DATE,
    "open",
    "high",
    "low",
    "close",
    "adj_close",
    "volume",
    SOURCE,
    SYNTHETIC,
)
PRICE_KEY: Final[tuple[str, ...]] = (TICKER, DATE)

# Benchmark index levels (one or more named benchmarks).
BENCHMARK_COLUMNS: Final[tuple[str, ...]] = ("symbol", DATE, "close", SOURCE, SYNTHETIC)
BENCHMARK_KEY: Final[tuple[str, ...]] = ("symbol", DATE)

# Quarterly fundamentals. ``period_end`` is the fiscal quarter end; the row is
# visible only from ``report_date`` (the filing/announcement date). Flow items
# (revenue, net_income, operating_cash_flow) are for the quarter; stock items
# (total_assets, total_equity, total_debt, shares_outstanding) are at period end.
FUNDAMENTAL_VALUE_COLUMNS: Final[tuple[str, ...]] = (
    "revenue",
    "net_income",
    "operating_cash_flow",
    "total_assets",
    "total_equity",
    "total_debt",
    "shares_outstanding",
)
FUNDAMENTAL_COLUMNS: Final[tuple[str, ...]] = (
    TICKER,
    "period_end",
    "report_date",
    *FUNDAMENTAL_VALUE_COLUMNS,
    SOURCE,
    SYNTHETIC,
)
FUNDAMENTAL_KEY: Final[tuple[str, ...]] = (TICKER, "period_end")

# Announcements and news. ``doc_id`` is the sha256 of the normalised content,
# so the same text from two feeds is stored once.
DOCUMENT_COLUMNS: Final[tuple[str, ...]] = (
    "doc_id",
    TICKER,
    "published_at",
    SOURCE,
    "title",
    "body",
    SYNTHETIC,
)
DOCUMENT_KEY: Final[tuple[str, ...]] = ("doc_id",)

# Documents after a text model scored them. ``score`` is P(positive) -
# P(negative), in [-1, 1]. ``published_at`` is a UTC timestamp.
SCORED_DOCUMENT_COLUMNS: Final[tuple[str, ...]] = (
    "doc_id",
    TICKER,
    "published_at",
    "p_negative",
    "p_neutral",
    "p_positive",
    "score",
    "model_version",
)

# Breaks in a ticker's price series. A row says: the bar at ``date`` starts a new segment of
# ``ticker``'s history, so no return, feature window or label may span from before ``date`` to
# ``date`` or later. Written by ingestion (a reused code starts a new instrument; an unconfirmed
# corporate-action suspect under the ``mask`` policy), read by every transform that looks back or
# ahead. ``reason`` is one of :data:`SERIES_BREAK_REASONS`; ``detail`` is free text for people.
SERIES_BREAK_REASONS: Final[tuple[str, ...]] = ("code_reused", "corporate_action_suspect")
SERIES_BREAK_COLUMNS: Final[tuple[str, ...]] = (TICKER, DATE, "reason", "detail")
SERIES_BREAK_KEY: Final[tuple[str, ...]] = (TICKER, DATE, "reason")

# Instruments: one row per listing life of a code. A code absent for more than a configured number
# of sessions that then trades again is a new instrument (ASX reassigns the codes of delisted
# companies), so one ticker may have several lives; each later life starts with a ``code_reused``
# series break. ``instrument_id`` is ``f"{ticker}:{first_date:%Y%m%d}"``, stable across re-runs;
# ``first_date``/``last_date`` are the life's first and last bar.
INSTRUMENT_COLUMNS: Final[tuple[str, ...]] = ("instrument_id", TICKER, "first_date", "last_date")
INSTRUMENT_KEY: Final[tuple[str, ...]] = ("instrument_id",)

# Corporate actions and the adjustment factors derived from them (CRSP/Qlib style). A row is one
# action of ``ticker`` with ex-date ``date``: its own ``price_factor``/``volume_factor`` and the
# cumulative ones, i.e. the product over this and every later action of the ticker. A bar dated
# before ``date`` (and on or after the previous action's date) has ``adj_close = close x
# cum_price_factor`` and adjusted volume ``volume x cum_volume_factor``; bars on or after the last
# action keep factor 1, so the latest price is the raw one. ``origin`` is "file" for actions the
# user confirmed, "suspect" for detected ones applied under the ``adjust`` policy. Derived at
# ingest and written with ``OfflineStore.replace``; the raw OHLCV columns are never changed.
CORPORATE_ACTION_KINDS: Final[tuple[str, ...]] = (
    "split",
    "consolidation",
    "bonus_issue",
    "demerger",
    "capital_return",
    "special_dividend",
    "dividend",
)
ADJUSTMENT_FACTOR_COLUMNS: Final[tuple[str, ...]] = (
    TICKER,
    DATE,
    "kind",
    "ratio",
    "amount",
    "price_factor",
    "volume_factor",
    "cum_price_factor",
    "cum_volume_factor",
    "origin",
)
ADJUSTMENT_FACTOR_KEY: Final[tuple[str, ...]] = (TICKER, DATE, "kind")

# A point-in-time universe as a dated membership table. A row says: on reconstitution ``date``,
# ``ticker`` was chosen into ``universe`` (the rule's id) at ``rank`` (1 = most traded) with the
# ranked ``traded_value`` (the rule's statistic of close x volume over the sessions before
# ``date``). Membership holds from ``date`` until the universe's next reconstitution date, and a
# member whose bars stop leaves from the session after its last bar. Derived from the prices
# (``training.universe``) and rewritten whole with ``OfflineStore.replace`` per universe.
UNIVERSE_MEMBERSHIP_COLUMNS: Final[tuple[str, ...]] = ("universe", DATE, TICKER, "rank", "traded_value")
UNIVERSE_MEMBERSHIP_KEY: Final[tuple[str, ...]] = ("universe", DATE, TICKER)
