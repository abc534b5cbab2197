"""``python -m serving.sentiment_text``: the text sentiment classifier server (see docs/serving-contract.md)."""

from __future__ import annotations

from serving.cli import main as serve_main


def main() -> None:
    """Serve ``models:/sentiment_text@<alias>`` as ``sentiment_text``."""
    serve_main("sentiment_text")


if __name__ == "__main__":
    main()
