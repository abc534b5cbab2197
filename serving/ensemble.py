"""``python -m serving.ensemble``: the ensemble server (see docs/serving-contract.md)."""

from __future__ import annotations

from serving.cli import main as serve_main


def main() -> None:
    """Serve ``models:/ensemble@<alias>`` as ``ensemble``."""
    serve_main("ensemble")


if __name__ == "__main__":
    main()
