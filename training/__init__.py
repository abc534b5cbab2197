"""Portfolio OS training: ingestion, data health, datasets, models, tuning and registration.

Runs as a local job (``python -m training``) or as a KubeRay ``RayJob`` with the same entry point.
"""
