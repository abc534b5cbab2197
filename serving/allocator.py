"""``python -m serving.allocator``: the portfolio allocator server (see docs/serving-contract.md)."""

from __future__ import annotations

from serving.cli import main as serve_main


def main() -> None:
    """Serve ``models:/allocator@<alias>`` as ``allocator``."""
    serve_main("allocator")


if __name__ == "__main__":
    main()
