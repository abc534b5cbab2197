"""Portfolio OS feature repository: Feast definitions and the pure transforms behind every feature.

This package imports no other package of the project; every other package may import it.
"""
