"""Metric names in a PromQL expression, without a full parser.

Dashboards and rules must only query series the code exports; :func:`metric_names` lists the
selectors' metric names so a test can compare them with the exported set. Syntax errors are
promtool's job (dashboard expressions are also checked with ``promtool check rules``); this only
has to find names reliably in valid PromQL: strings, label matchers, ranges, durations, numbers,
grouping clauses, functions and keywords are removed, and what remains are metric names.
"""

from __future__ import annotations

import re
from typing import Final

KEYWORDS: Final = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf"}
)
_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS: Final = re.compile(r"\{[^{}]*\}")
_RANGE: Final = re.compile(r"\[[^\[\]]*\]")
_GROUPING: Final = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLE: Final = re.compile(r"\$\{[^}]*\}|\$\w+")
_NUMBER: Final = re.compile(r"(?<![\w:])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?(?:[smhdwy]|ms)?)")
_IDENTIFIER: Final = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
HISTOGRAM_SUFFIXES: Final = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    """The metric names selected by ``expr`` (functions, keywords and label names excluded)."""
    text = _VARIABLE.sub(" ", _STRING.sub(" ", expr))
    text = _RANGE.sub(" ", _MATCHERS.sub(" ", text))
    text = _NUMBER.sub(" ", _GROUPING.sub(" ", text))
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group().lower() in KEYWORDS:
            continue  # a function or aggregation call, or an operator keyword
        names.add(match.group())
    return names


def base_name(metric: str, histograms: frozenset[str] | set[str]) -> str:
    """``x_bucket``/``x_sum``/``x_count`` -> ``x`` when ``x`` is a known histogram; else unchanged."""
    for suffix in HISTOGRAM_SUFFIXES:
        if metric.endswith(suffix) and metric.removesuffix(suffix) in histograms:
            return metric.removesuffix(suffix)
    return metric


def counter_base(metric: str) -> str:
    """``x_total`` -> ``x``: prometheus_client declares counters without the suffix it exposes."""
    return metric.removesuffix("_total")
