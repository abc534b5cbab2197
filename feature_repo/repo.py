"""The Feast objects as module globals, for the ``feast`` CLI (``feast -c feature_repo plan``).

The project itself builds them with :func:`feature_repo.definitions.build_definitions`; this
module exists only because ``feast apply`` discovers objects by importing repo files.
"""

from __future__ import annotations

from feature_repo.definitions import build_definitions
from feature_repo.settings import get_settings

_definitions = build_definitions(get_settings().data_dir)

ticker = _definitions.ticker
technical_features = _definitions.views["technical_features"]
fundamental_features = _definitions.views["fundamental_features"]
sentiment_features = _definitions.views["sentiment_features"]
alpha_features = _definitions.views["alpha_features"]
technical_model_v1 = _definitions.services["technical_model_v1"]
technical_model_v2 = _definitions.services["technical_model_v2"]
fundamental_model_v1 = _definitions.services["fundamental_model_v1"]
sentiment_signal_model_v1 = _definitions.services["sentiment_signal_model_v1"]
allocator_v1 = _definitions.services["allocator_v1"]
market = _definitions.market
market_regime = _definitions.views["market_regime"]
return_window = _definitions.views["return_window"]
