"""What every model card and report says about its data source (synthetic data is always said to be synthetic)."""

from __future__ import annotations

# What each data source means for the figures on a card, stated verbatim on every card and report.
DATA_LABELS = {
    "skfolio": "REAL data: the bundled S&P 500 sample (skfolio)",
    "files": "REAL data: the user's files",
    "eodhd": "REAL data: EODHD",
    "synthetic": "SYNTHETIC data: a wiring check, NOT a quality figure",
}
DATA_LIMITS = {
    "skfolio": (
        "The bundled sample (skfolio's S&P 500 dataset) holds 20 US large caps that are index members "
        "today: survivorship bias flatters any long-only result.",
        "Adjusted closes only: no volume, no fundamentals, no news in the bundled data.",
    ),
    "synthetic": ("Trained and evaluated on generated data: no figure on this card says anything about markets.",),
}


def data_label(kind: str) -> str:
    """How a report names its data source (synthetic data is always said to be synthetic)."""
    return DATA_LABELS.get(kind, f"data source '{kind}'")
