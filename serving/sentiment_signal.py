"""``python -m serving.sentiment_signal``: the sentiment_signal signal model server (see docs/serving-contract.md)."""

from __future__ import annotations

from serving.cli import main as serve_main


def main() -> None:
    """Serve ``models:/sentiment_signal@<alias>`` as ``sentiment_signal`` and ``sentiment_signal-explain``."""
    serve_main("sentiment_signal")


if __name__ == "__main__":
    main()
