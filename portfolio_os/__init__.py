"""``portfolio-os``: the one command in front of every Portfolio OS entry point (see :mod:`portfolio_os.cli`).

This package imports no other package of the project: it names entry-point modules and runs them.
"""
