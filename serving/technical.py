"""``python -m serving.technical``: the technical signal model server (see docs/serving-contract.md)."""

from __future__ import annotations

from serving.cli import main as serve_main


def main() -> None:
    """Serve ``models:/technical@<alias>`` as ``technical`` and ``technical-explain``."""
    serve_main("technical")


if __name__ == "__main__":
    main()
