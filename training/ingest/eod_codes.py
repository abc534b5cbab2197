"""ASX defaults for per-day vendor files: which codes are kept as shares and which are indices.

Kept apart from the reader so the run configuration can name them as defaults without importing
pyarrow.
"""

from __future__ import annotations

from typing import Final

# Ordinary shares, units, listed investment companies and exchange-traded products have three
# characters; options, warrants and rights add a fourth or more (BHPZZ0, ...).
ASX_CODE_PATTERN: Final = r"^[A-Z0-9]{3}$"

# Every ASX index code seen in per-day files from 1997 to 2014: the X-prefixed codes whose volume
# is always 0 (headline, size, sector and other indices). An X-prefixed code is not always an
# index (XRO, XAM, XAN and XTE are companies), hence a list rather than a rule.
ASX_INDEX_CODES: Final[tuple[str, ...]] = (
    # headline and size indices
    "XJO",  # S&P/ASX 200
    "XAO",  # All Ordinaries
    "XKO",  # S&P/ASX 300
    "XTL",  # S&P/ASX 20
    "XFL",  # S&P/ASX 50
    "XTO",  # S&P/ASX 100
    "XMD",  # S&P/ASX Midcap 50
    "XSO",  # S&P/ASX Small Ordinaries
    "XEC",  # S&P/ASX Emerging Companies
    # S&P/ASX 200 GICS sectors, industry groups and other S&P/ASX indices
    "XEJ",
    "XMJ",
    "XNJ",
    "XDJ",
    "XSJ",
    "XHJ",
    "XFJ",
    "XIJ",
    "XTJ",
    "XUJ",
    "XPJ",
    "XXJ",
    "XMM",
    "XGD",
    "XJR",
    "XAT",
    "XBW",
    "XAF",
    "XLD",
    "XNT",
    "XNV",
    "XDI",
    # older ASX sector indices (present in the data from 2000-11 to 2002-04 only)
    "XAI",
    "XAR",
    "XBF",
    "XBI",
    "XBM",
    "XCE",
    "XDC",
    "XDR",
    "XEG",
    "XEY",
    "XFH",
    "XGO",
    "XHB",
    "XIF",
    "XIN",
    "XIU",
    "XJI",
    "XJP",
    "XKI",
    "XKP",
    "XKR",
    "XME",
    "XMI",
    "XMR",
    "XMT",
    "XOM",
    "XPP",
    "XPT",
    "XRE",
    "XSI",
    "XSR",
    "XTI",
    "XTP",
    "XTR",
    "XTU",
)
