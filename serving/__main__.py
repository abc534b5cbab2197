"""``python -m serving NAME [OPTIONS]`` (``portfolio-os model-server NAME``): one model server by name.

The same server as ``python -m serving.<NAME> [OPTIONS]`` (the form the chart and the images run):
``NAME`` is one of the entry points the launcher starts (:data:`serving.launcher.MODELS`).
"""

from __future__ import annotations

import sys

from serving.launcher import MODELS

EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    """Serve the model named by the first argument with the remaining options.

    Returns:
        2 with a one-line reason when the name is missing or unknown (a served model exits the process).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in {"-h", "--help"}:
        out = sys.stdout if args else sys.stderr
        print(f"usage: python -m serving NAME [OPTIONS]   NAME: one of {', '.join(MODELS)}", file=out)
        print("       python -m serving NAME --help   lists the server's options", file=out)
        return 0 if args else EXIT_USAGE
    name, options = args[0], args[1:]
    if name not in MODELS:
        print(f"unknown model server {name!r}; one of {', '.join(MODELS)}", file=sys.stderr)
        return EXIT_USAGE
    from serving.cli import main as serve_main

    # The server reads its options from sys.argv (kserve parses them at import), as python -m serving.NAME does.
    sys.argv = [f"{sys.argv[0]} {name}", *options]
    serve_main(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
