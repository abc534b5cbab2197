"""The briefing's sentences, written from fixed templates over the stored facts (no language model).

Every number a sentence shows is a stored fact put through one of :data:`FORMATS` (a test reads
each number back from the sentences and finds the fact it came from). Sections come in a fixed
order; a section without facts says so in one sentence rather than disappearing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from api.market_schemas import RegimeStatePublic
from feature_repo.briefing import BriefingFacts

# How each kind of number is written: score-like values to 3 decimals, shares as whole percents.
FORMATS: Final[dict[str, str]] = {
    "score": "{:.3f}",
    "signed": "{:+.3f}",
    "z": "{:+.1f}",
    "one_decimal": "{:.1f}",
    "percent": "{:.0%}",
}

TEMPLATES: Final[dict[str, str]] = {
    "signals.head": "The {model} scored {tickers} tickers on {session}; the largest changes since {previous}:",
    "signals.first": "The {model} scored {tickers} tickers on {session}, its first scored session.",
    "signals.change": "{ticker} moved {change} to {score} (from {previous_score}).",
    "signals.none": "No signal scores are stored for {session}.",
    "regime.state": "The {benchmark} regime on {date} is {regime}: trend {trend} ({trend_value} over {trend_window} "
    "sessions), volatility {volatility} ({volatility_value} annualised).",
    "regime.none": "The regime is not available: {reason}.",
    "drift.view": "{view}: {share} of {tested} tested features drifted over {start} to {end} ({verdict}).",
    "drift.none": "No drift run had finished by {session}.",
    "decay.model": "{model}: rolling rank IC {ic}, t-stat {tstat} over {n_dates} dates ({verdict}).",
    "decay.none": "No model had enough known outcomes for a rolling IC by {session}.",
    "sentiment.head": "{count} of {tickers} tickers with documents on {session} moved at least {threshold} standard "
    "deviations from their own history; the largest:",
    "sentiment.spike": "{ticker}: daily sentiment {score} against its mean {mean} (z {z} over {days} days).",
    "sentiment.calm": "None of the {tickers} tickers with documents on {session} moved {threshold} standard "
    "deviations from its own history.",
    "sentiment.none": "No sentiment features are stored for {session}.",
    "anomalies.head": "The data-quality sentinel flagged {count} of {scored} tickers on {session}.",
    "anomalies.ticker": "{ticker} ({ticker_class}, score {score}): {reasons}.",
    "anomalies.none": "The data-quality sentinel did not score {session}.",
}
TITLES: Final[dict[str, str]] = {
    "signals": "Largest signal changes",
    "regime": "Market regime",
    "drift": "Feature drift",
    "decay": "Alpha decay",
    "sentiment": "Sentiment spikes",
    "anomalies": "Data anomalies",
}


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    sentences: list[str]


def _f(kind: str, value: float) -> str:
    return FORMATS[kind].format(value)


def signals(facts: BriefingFacts) -> list[str]:
    s = facts.signals
    if s is None:
        return [TEMPLATES["signals.none"].format(session=facts.session)]
    if s.previous_session is None:
        return [TEMPLATES["signals.first"].format(model=s.model, tickers=s.tickers, session=facts.session)]
    head = TEMPLATES["signals.head"].format(
        model=s.model, tickers=s.tickers, session=facts.session, previous=s.previous_session
    )
    return [head] + [
        TEMPLATES["signals.change"].format(
            ticker=c.ticker,
            change=_f("signed", c.change),
            score=_f("score", c.score),
            previous_score=_f("score", c.previous_score),
        )
        for c in s.largest_changes
    ]


def regime(benchmark: str | None, state: RegimeStatePublic | None, reason: str) -> list[str]:
    if benchmark is None or state is None:
        return [TEMPLATES["regime.none"].format(reason=reason)]
    inputs = state.inputs
    return [
        TEMPLATES["regime.state"].format(
            benchmark=benchmark,
            date=state.date,
            regime=state.regime,
            trend=state.trend,
            trend_value="n/a" if inputs.trend is None else _f("signed", inputs.trend),
            trend_window=inputs.trend_window,
            volatility=state.volatility,
            volatility_value="n/a" if inputs.volatility is None else _f("score", inputs.volatility),
        )
    ]


def drift(facts: BriefingFacts) -> list[str]:
    if not facts.drift:
        return [TEMPLATES["drift.none"].format(session=facts.session)]
    return [
        TEMPLATES["drift.view"].format(
            view=d.view,
            share=_f("percent", d.share),
            tested=d.tested_features,
            start=d.current_start,
            end=d.current_end,
            verdict="drift detected" if d.detected else "no drift",
        )
        for d in facts.drift
    ]


def decay(facts: BriefingFacts) -> list[str]:
    if not facts.decay:
        return [TEMPLATES["decay.none"].format(session=facts.session)]
    return [
        TEMPLATES["decay.model"].format(
            model=d.model,
            ic=_f("signed", d.rolling_rank_ic),
            tstat=_f("signed", d.rank_ic_tstat),
            n_dates=d.n_dates,
            verdict="decayed" if d.decayed else "significant",
        )
        for d in facts.decay
    ]


def sentiment(facts: BriefingFacts) -> list[str]:
    s = facts.sentiment
    if s is None:
        return [TEMPLATES["sentiment.none"].format(session=facts.session)]
    values = {
        "tickers": s.tickers_with_documents,
        "session": facts.session,
        "threshold": _f("one_decimal", s.z_threshold),
    }
    if not s.spikes:
        return [TEMPLATES["sentiment.calm"].format(**values)]
    return [TEMPLATES["sentiment.head"].format(count=s.spikes_total, **values)] + [
        TEMPLATES["sentiment.spike"].format(
            ticker=p.ticker,
            score=_f("signed", p.score),
            mean=_f("signed", p.mean),
            z=_f("z", p.z),
            days=p.history_days,
        )
        for p in s.spikes
    ]


def anomalies(facts: BriefingFacts) -> list[str]:
    a = facts.anomalies
    if a is None:
        return [TEMPLATES["anomalies.none"].format(session=facts.session)]
    head = TEMPLATES["anomalies.head"].format(count=a.count, scored=a.tickers_scored, session=facts.session)
    return [head] + [
        TEMPLATES["anomalies.ticker"].format(
            ticker=t.ticker,
            ticker_class=t.ticker_class,
            score=_f("score", t.anomaly_score),
            reasons=", ".join(f"{r.statistic} {_f('z', r.deviation)}" for r in t.reasons),
        )
        for t in a.top
    ]


def sections(
    facts: BriefingFacts, benchmark: str | None, state: RegimeStatePublic | None, regime_reason: str
) -> list[Section]:
    """Every section, in the briefing's order."""
    sentences = {
        "signals": signals(facts),
        "regime": regime(benchmark, state, regime_reason),
        "drift": drift(facts),
        "decay": decay(facts),
        "sentiment": sentiment(facts),
        "anomalies": anomalies(facts),
    }
    return [Section(name, TITLES[name], text) for name, text in sentences.items()]


def markdown(requested: dt.date | None, session: dt.date, parts: list[Section]) -> str:
    """The briefing as Markdown: a heading, then one subsection per section (sentences as bullets)."""
    lines = [f"# Portfolio OS briefing, {session}", ""]
    if requested is not None and requested != session:
        lines += [f"_{requested} is not a session; this is the briefing of the last session before it._", ""]
    for part in parts:
        lines += [f"## {part.title}", ""] + [f"- {sentence}" for sentence in part.sentences] + [""]
    return "\n".join(lines)
