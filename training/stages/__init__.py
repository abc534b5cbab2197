"""Pipeline stages: each a function ``run(ctx) -> summary`` that can run alone."""
