"""The model registry: every model family is logged, registered, gated and rolled back through it.

Modules, each with one job: :mod:`~training.registry.config` (the run's ``registry:`` section),
:mod:`~training.registry.model_registry` (:class:`ModelRegistry`, the MLflow side: log, register,
promote, roll back, audit) and :mod:`~training.registry.gate` (the one register-then-gate step every
training stage calls).
"""
