"""The pure risk layer: no Backtrader, no broker. The strategies and observers call into it.

- ``portfolio``: Ledoit-Wolf covariance and the cvxpy mean-variance allocation under caps
  (``MeanVarianceSizer``: the trading plan's target weights with Kelly caps)
- ``kelly``: Kelly fraction and the per-position Kelly cap
- ``sizing``: weight -> whole shares under the risk-per-trade cap, the cash and the costs; equal weights
- ``stops``: initial stop distance, when a trailing stop fits, stop moves
- ``position_rules``: the ``ml`` plan's rules for an open position, bar by bar (exits, trailing stop,
  stop and target moves, halving) and the state they carry
- ``limits``: daily loss limit and drawdown kill switch (entry gates)
- ``manager``: the risk score of an entry candidate and the gates together
"""
