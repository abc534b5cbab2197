"""Market data ingestion: bundled real data, user files, the EODHD API and a synthetic generator.

Every loader returns frames in the column contracts of :mod:`feature_repo.tables`.
"""
