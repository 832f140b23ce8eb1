"""The ML layer, pure (no Backtrader): labels, purged splits, model plugins, stacking, calibration,
the specialised models, the walk-forward and its honest evaluation, the model registry.

Everything works on plain arrays on one calendar (``models.dataset.PanelData``): features
(T, N, F), prices (T, N), labels. Only ``models.labels`` looks forward.

- ``labels``: forward returns / triple-barrier labels per horizon with their end bars; path labels
  (best entry and exit timing, adverse excursion).
- ``splits``: ``training_samples`` (walk-forward purge + embargo), ``purged_kfold``, ``retrain_points``.
- ``plugins``: ``ModelPlugin`` (``fit``, ``predict``, ``save``, ``load``): XGBoost, LightGBM, Dense, LSTM.
- ``ensemble`` (stacking with recency-weighted rows), ``calibration`` (isotonic / Platt,
  reliability table), ``regime`` (Gaussian mixture), ``volatility`` (GARCH), ``timing``, ``stoploss``.
- ``predictor.EnsemblePredictor``: all of the above fitted on one window; ``predict`` -> ``Predictions``.
- ``search``: Optuna (TPE) or random search with purged time-series CV inside the window, every trial counted.
- ``walkforward.WalkForward``: retrain on schedule, predict, keep the out-of-sample history;
  ``run`` for a backtest, ``retrain`` + ``predict`` per bar live (same numbers).
- ``evaluation``: per-fold and aggregate out-of-sample scores beside always-up and last-return.
- ``leakage``: label lookahead and feature-label checks. ``registry``: save/load with a manifest.
"""
