"""Portfolio allocation: the RL allocator, classic optimisers, the walk-forward backtester, the tear sheet.

Modules (each with one job):

* ``panel``: :class:`MarketPanel`, the dense (sessions x tickers) inputs every part shares, with its
  input checks (NaN returns named by ticker and date, a history shorter than the window).
* ``results``: :class:`StrategyResult`, what one strategy's backtest produced.
* ``weights``: long-only weights from logits (stable softmax), the max-weight cap, the turnover cap.
  Pure numpy: the same code runs in the environment, the backtester and the served model.
* ``env``: the gymnasium portfolio environment.
* ``optimisers``: the classic strategies (skfolio) and the top-k-by-score strategy.
* ``performance``: performance metrics, the deflated Sharpe ratio, the block bootstrap, stress
  windows and the regime classifier.
* ``backtest``: the walk-forward backtester (periodic re-fitting, daily or weekly rebalancing).
* ``rl``: PPO/A2C training as Ray Tune trials, selection on validation windows.
* ``policy``: the numpy forward pass of a trained policy (what the registered model runs).
* ``tearsheet``: the self-contained HTML report.
* ``comparison``: the stage's domain steps: RL data, the policy against every baseline on the test
  segment, stress windows, regimes, Monte Carlo.
* ``report``: what the ``allocate`` stage prints and writes.
* ``registration``: record, card, policy file and champion Sharpe for the registry's gate.
"""
