"""``python -m serving.fundamental``: the fundamental signal model server (see docs/serving-contract.md)."""

from __future__ import annotations

from serving.cli import main as serve_main


def main() -> None:
    """Serve ``models:/fundamental@<alias>`` as ``fundamental`` and ``fundamental-explain``."""
    serve_main("fundamental")


if __name__ == "__main__":
    main()
