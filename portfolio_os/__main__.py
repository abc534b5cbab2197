"""``python -m portfolio_os``: the same as the ``portfolio-os`` command."""

from portfolio_os.cli import cli

if __name__ == "__main__":
    cli()
