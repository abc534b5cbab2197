"""The signal models (technical, fundamental, sentiment signal) and their ensemble, end to end.

Modules, each with one job, in the shape of :mod:`training.allocation` and :mod:`training.sentiment`:

* ``config``: the ``signals:`` section of a run (universe, segments, models, tuning, learning).
* ``inputs``: the run's shared data (prices, outcomes, labels, the point-in-time universe).
* ``datasets``: a feature service's point-in-time features joined to the outcomes.
* ``tuning``: the Ray Tune search on purged walk-forward folds.
* ``horizons``: out-of-fold rank IC at several label horizons.
* ``fit``: tune, fit and score one model; blend the ensemble.
* ``evaluate``: test-segment metrics, the top-k book and the baselines.
* ``card``: the model card; ``ensemble_pyfunc``: the registered ensemble (blending code inside).
* ``registration``: records, cards and champion scores for the registry's gate.
* ``report``: what the ``train`` stage prints and writes to ``<data>/reports``;
  ``portfolio_report``: its portfolio section (the test-segment books of every model and baseline).
* ``guard``: the post-promotion guard (roll a new champion back on live outcomes).

The model classes (:mod:`training.models`) never import mlflow; only ``registration`` and ``guard``
use the registry.
"""
