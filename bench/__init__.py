"""Benchmarks: each module prints one JSON document and compares against a baseline run beside it."""
