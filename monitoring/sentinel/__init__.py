"""The data-quality sentinel: an IsolationForest over daily per-ticker statistics.

``statistics`` builds the statistics from the feature files, ``model`` fits and scores them,
``job`` runs it all (``python -m monitoring sentinel``) and writes the anomalies, the summary the
exporter serves and the ``data_quality`` view the gateway reads online.
"""
