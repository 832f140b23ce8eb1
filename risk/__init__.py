"""The pure risk layer: no Backtrader, no broker. The strategy, sizer and observers call into it.

- ``portfolio``: Ledoit-Wolf covariance and the cvxpy mean-variance allocation under caps
- ``kelly``: Kelly fraction and the per-position Kelly cap
- ``sizing``: weight -> whole shares under the risk-per-trade cap
- ``stops``: initial stop distance, trailing stop, stop moves
- ``position_rules``: target update, halving, exit reasons for open positions
- ``limits``: daily loss limit and drawdown kill switch (entry gates)
- ``manager``: the risk score of an entry candidate and the gates together
"""
