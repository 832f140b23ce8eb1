"""The typed shape of the one config file.

Every number lives in ``config/default.toml``; this module only says what each key
is, its type and its bounds. A user's file is merged over the defaults, so it
names only what it changes. Unknown or mistyped keys fail with their dotted name.
"""
from __future__ import annotations

import datetime as _dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Fraction = Field(ge=0.0, le=1.0)


class Section(BaseModel):
    """Frozen, strict: a typo in a key is an error, not a silently ignored default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_none(cls, value, info):
        # TOML has no null: an empty string stands for "not set" where a field allows None.
        field = cls.model_fields[info.field_name]
        if value == "" and field.annotation is not str and "None" in str(field.annotation):
            return None
        return value


class DataConfig(Section):
    paths: list[str] = Field(min_length=1, description="CSV files or folders, one symbol per file")
    sector_map: str | None = Field(description="CSV symbol,sector; empty string for none")
    drop_missing_prices: bool = Field(description="drop rows with a missing price (with a warning) instead of failing")
    invalid_rows: Literal["error", "drop"] = Field(description="a row with a missing or impossible value (high below low, open or close outside the bar's range, ...): error refuses the file, drop drops the row with a warning naming file, row and problem (counted in metrics.json data_quality)")
    news: str | None = Field(description="CSV timestamp,symbol,headline for sentiment features; empty for none")
    macro: list[str] = Field(description="extra series (VIX, rates, dollar index) as CSV files, used as market features")


class CostsConfig(Section):
    commission_bps: float = Field(ge=0, description="commission per side, basis points of traded value")
    slippage_bps: float = Field(ge=0, description="slippage per side, basis points, against the trader")
    fill: Literal["next_open", "next_close"] = Field(description="market orders fill at the next bar's open or close")


class BacktestConfig(Section):
    strategy: str
    cash: float = Field(gt=0)
    start: _dt.date | None
    end: _dt.date | None
    seed: int = Field(ge=0)
    out_root: str = Field(description="folder under which each run gets a new folder when --out is not given")
    plot: bool
    chart_symbols: int = Field(ge=0, description="symbols drawn on Backtrader's chart (most traded first)")
    runonce: bool = Field(description="Backtrader's vectorised indicator mode; results are identical either way")
    progress: bool = Field(description="show a progress bar on long runs")

    @model_validator(mode="after")
    def _range(self):
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


class MomentumBreakoutConfig(Section):
    breakout_bars: int = Field(ge=2, description="enter when the close exceeds the highest high of this many previous bars")
    momentum_bars: int = Field(ge=1, description="... and the return over this many bars is above min_momentum")
    min_momentum: float
    trend_bars: int = Field(ge=2, description="exit on signal when the close falls below its moving average over this many bars")
    stop_pct: float = Field(gt=0, lt=1, description="fixed stop below the signal close (the blueprint's 2-3%)")
    max_hold_bars: int = Field(ge=1, description="exit after this many bars")
    position_weight: float = Field(gt=0, le=1, description="target weight of each new position")


class MLStrategyConfig(Section):
    """The ``ml`` strategy's entry rule: the ensemble's calibrated call at the decision horizon."""

    min_confidence: float = Field(ge=0.5, le=1, description="enter only when the calibrated P(rise) at the decision horizon is at least this")
    min_expected_return: float = Field(description="... and the expected simple return over the decision horizon is above this")
    max_hold_bars: int | None = Field(ge=1, description="exit after this many bars; empty: the models' decision horizon")
    signal_exit_confidence: float = Field(ge=0, le=1, description="exit (reason signal) when the calibrated P(rise) falls below this and the expected return is negative")


class MLRankConfig(Section):
    """The ``ml_rank`` strategy: hold the symbols the ensemble ranks highest, with hysteresis (Qlib's top-k dropout)."""

    rebalance_bars: int = Field(ge=1, description="rank and rebalance at the first bar with predictions, then every this many bars")
    top_k: int = Field(ge=1, description="hold the top_k symbols by the ensemble's expected return at the decision horizon (at most risk.max_positions)")
    keep_k: int = Field(ge=1, description="a holding is sold only once it ranks below keep_k (at least top_k): fewer trades than selling whatever leaves the top_k")
    target_exposure: float = Field(gt=0, le=1, description="new entries share the room between this share of equity and what is held or pending (at most risk.max_total_weight)")
    cash_buffer: float = Field(ge=0, lt=1, description="share of equity the buys leave in cash: they are sized at the close and fill at the next open, and a book spent to the last dollar has its last buy refused for want of cash when the open gaps up")
    weights: Literal["equal", "mean_variance"] = Field(description="equal: equal shares of the room, each at most risk.max_position_weight; mean_variance: the cvxpy sizer's weights (Ledoit-Wolf covariance, caps per name and sector) scaled to fill the room")
    stops: bool = Field(description="an initial stop order with each entry (the ml plan's stop rules, risk.stop_*); false: exits by rank only")
    score: Literal["model", "momentum_12_1"] = Field(description="what ranks the symbols: the ensemble's expected return at the decision horizon, or the 12-1 month momentum (the baseline: the same plan, stops and risk rules, a score without the models)")

    @model_validator(mode="after")
    def _hysteresis(self):
        if self.keep_k < self.top_k:
            raise ValueError(f"ml_rank.keep_k ({self.keep_k}) is below ml_rank.top_k ({self.top_k}): a holding "
                             f"is kept while it ranks within keep_k, which must be at least top_k")
        return self


class RiskScoreWeights(Section):
    """Weights of the risk components in the one risk score (they sum to 1)."""

    var: float = Field(ge=0, le=1, description="portfolio value at risk with the candidate, against var_limit")
    correlation: float = Field(ge=0, le=1, description="highest correlation with a holding, against max_correlation")
    sector: float = Field(ge=0, le=1, description="sector exposure after entry, against max_sector_weight")
    liquidity: float = Field(ge=0, le=1, description="order value against the allowed share of average dollar volume")
    regime: float = Field(ge=0, le=1, description="risk of the current market regime (regime_risk)")

    @model_validator(mode="after")
    def _sum_to_one(self):
        total = self.var + self.correlation + self.sector + self.liquidity + self.regime
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"risk score weights must sum to 1 (got {total:g})")
        return self


class RiskConfig(Section):
    # portfolio and sizing
    max_positions: int = Field(ge=1, description="most names held at once")
    max_position_weight: float = Field(ge=0, le=1, description="largest weight of one position")
    min_position_value: float = Field(ge=0, description="smallest position worth opening, in account currency")
    max_total_weight: float = Field(ge=0, le=1, description="weights sum to at most this (the rest is cash)")
    max_sector_weight: float = Field(ge=0, le=1, description="summed weight of one sector")
    risk_aversion: float = Field(ge=0, description="lambda in: maximise mu'w - lambda w'Sigma w")
    covariance_bars: int = Field(ge=2, description="trailing bars of returns for the shrunk covariance")
    min_history_bars: int = Field(ge=2, description="fewer bars of a symbol's returns: its variance, VaR or correlation is unknown")
    kelly_fraction: float = Field(ge=0, le=1, description="multiple of the Kelly fraction used as a position's weight cap")
    risk_per_trade: float = Field(ge=0, le=1, description="position value x stop distance at most this share of equity")
    # stops
    stop_min: float = Field(gt=0, lt=1, description="narrowest initial stop, fraction of the entry price")
    stop_max: float = Field(gt=0, lt=1, description="widest initial stop, fraction of the entry price")
    stop_volatility_bars: int = Field(ge=2, description="bars of returns for the volatility that scales the stop")
    stop_reference_volatility: float = Field(gt=0, description="per-bar return volatility at which the stop is not scaled")
    stop_volatility_exponent: float = Field(ge=0, description="stop x (volatility / reference) ** exponent")
    stop_regime_multipliers: dict[str, float] = Field(description="regime label -> multiplier of the stop")
    neutral_regime: str = Field(description="the regime label used when no regime is known")
    trail_activation: float = Field(ge=0, description="the trailing stop starts after this gain from entry")
    trail_pct: float = Field(gt=0, lt=1, description="the trailing stop sits this far below the highest price")
    trail_adx_min: float = Field(ge=0, description="a trailing stop fits when ADX is above this ...")
    trail_min_momentum: float = Field(description="... and momentum is above this")
    # managing open positions
    target_update_threshold: float = Field(ge=0, description="update the target when the prediction moves it by more than this fraction")
    confidence_drop_halve: float = Field(ge=0, le=1, description="halve a position when confidence falls by more than this from entry")
    stop_move_threshold: float = Field(ge=0, description="move the stop when the optimal stop moves by more than this fraction of the entry price")
    # gates
    daily_loss_limit: float = Field(ge=0, le=1, description="no new entries for the rest of a day that lost this share of equity")
    max_drawdown: float = Field(ge=0, le=1, description="kill switch: flatten and halt at this drawdown from the equity peak")
    # risk score
    var_confidence: float = Field(gt=0, lt=1, description="confidence of the historical value at risk")
    var_bars: int = Field(ge=2, description="trailing bars of returns for the value at risk")
    var_limit: float = Field(gt=0, le=1, description="portfolio value at risk (per bar, share of equity) with the candidate")
    var_impact_high: float = Field(ge=0, description="halve the size when the candidate uses more than this share of the VaR budget left")
    correlation_bars: int = Field(ge=2, description="trailing bars for the correlation with holdings")
    max_correlation: float = Field(ge=-1, le=1, description="reject a candidate more correlated than this with any holding")
    correlation_delay_above: float = Field(ge=-1, le=1, description="delay the entry when the correlation is above this")
    correlation_delay_bars: int = Field(ge=0, description="bars an entry waits on high correlation (the blueprint's hour)")
    adv_bars: int = Field(ge=1, description="bars for the average dollar volume")
    max_adv_share: float = Field(gt=0, le=1, description="an order's value at most this share of average dollar volume")
    limit_order_above: float = Field(ge=0, le=1, description="use a limit order when the order uses more than this share of its liquidity allowance")
    regime_risk: dict[str, float] = Field(description="regime label -> risk component in [0, 1]")
    score_weights: RiskScoreWeights
    approve_below: float = Field(ge=0, le=1, description="approve a candidate whose risk score is below this")

    @model_validator(mode="after")
    def _consistent(self):
        if self.stop_min > self.stop_max:
            raise ValueError(f"stop_min {self.stop_min} is above stop_max {self.stop_max}")
        if self.correlation_delay_above > self.max_correlation:
            raise ValueError("correlation_delay_above is above max_correlation: no entry would ever be delayed")
        for name, table in (("stop_regime_multipliers", self.stop_regime_multipliers), ("regime_risk", self.regime_risk)):
            if self.neutral_regime not in table:
                raise ValueError(f"neutral_regime {self.neutral_regime!r} is not a key of {name}")
        if set(self.stop_regime_multipliers) != set(self.regime_risk):
            raise ValueError("stop_regime_multipliers and regime_risk must name the same regimes")
        if any(not 0 <= v <= 1 for v in self.regime_risk.values()):
            raise ValueError("regime_risk values must lie in [0, 1]")
        if any(v <= 0 for v in self.stop_regime_multipliers.values()):
            raise ValueError("stop_regime_multipliers must be positive")
        return self


class FeaturesConfig(Section):
    seed_tolerance: float = Field(gt=0, lt=1, description="weight a recursive smoother's seed may keep after the warm-up (sets EMA/Wilder warm-ups)")
    history_tolerance: float = Field(gt=0, lt=1, description="after its warm-up a value may differ by this much (relative to the feature's mean |value|) when the data starts later")
    daily_close_time: _dt.time = Field(description="close time of a daily bar (exchange time): news and macro values up to it count for that bar")
    exchange_timezone: str = Field(min_length=1, description="zone that news time stamps with a UTC offset are converted to")
    news_neutral_band: float = Field(ge=0, lt=1, description="|VADER compound score| up to this is neutral (neither positive nor negative)")
    cache: bool = Field(description="reuse the features computed before for the same bars, definitions and inputs (a cache on disk shared by backtest, train and features)")
    cache_dir: str = Field(min_length=1, description="folder of the feature cache (a relative path is relative to the working directory, like data.paths); delete it to reclaim the space")
    cache_dtype: Literal["float64", "float32"] = Field(description="stored and returned feature values: float64 equals a computation without the cache bit for bit; float32 halves the disk and memory, each value within 2^-24 of itself (models train on float32 anyway)")
    normalise: Literal["none", "rank", "zscore"] = Field(description="cross-sectional normalisation of the per-symbol features (a symbol's own values, outside the cross_sectional group; not market, macro, calendar or market-wide news values: docs/features.md lists them): none keeps the raw values; rank replaces each by its percentile rank in [0, 1] among the symbols with a warm value at the bar; zscore by (x - mean) / std over them (0 where they all have the same value); names and warm-ups stay, the registry hash and feature cache key change")


class XGBoostParams(Section):
    """XGBoost regressor (one output per horizon, ``hist`` trees); names as in ``xgboost.XGBRegressor``."""

    n_estimators: int = Field(ge=1, description="most trees; early stopping on the window's purged validation tail picks fewer")
    max_depth: int = Field(ge=1)
    learning_rate: float = Field(gt=0, le=1)
    subsample: float = Field(gt=0, le=1)
    colsample_bytree: float = Field(gt=0, le=1)
    min_child_weight: float = Field(ge=0)
    reg_lambda: float = Field(ge=0)
    max_bin: int = Field(ge=2, description="histogram bins per feature (fewer: faster)")
    early_stopping_rounds: int = Field(ge=0, description="stop when the validation loss has not improved for this many trees; 0: off")


class LightGBMParams(Section):
    """LightGBM regressor, one booster per horizon; names as in LightGBM's parameters."""

    n_estimators: int = Field(ge=1)
    num_leaves: int = Field(ge=2)
    max_depth: int = Field(description="-1: unlimited")
    learning_rate: float = Field(gt=0, le=1)
    subsample: float = Field(gt=0, le=1, description="row fraction per tree (bagging)")
    colsample_bytree: float = Field(gt=0, le=1)
    min_child_samples: int = Field(ge=1)
    reg_lambda: float = Field(ge=0)
    max_bin: int = Field(ge=2)
    early_stopping_rounds: int = Field(ge=0)


class DenseParams(Section):
    """Feed-forward network: Dense -> BatchNorm -> ReLU -> Dropout per layer, one linear output per target."""

    layers: list[int] = Field(min_length=1, description="units of each hidden layer")
    dropout: float = Field(ge=0, lt=1)
    learning_rate: float = Field(gt=0, description="Adam")
    huber_delta: float = Field(gt=0, description="Huber loss delta, on targets standardised over the training window")
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    patience: int = Field(ge=0, description="early stopping on the purged validation tail; 0: off")


class LSTMParams(Section):
    """Stacked LSTM over the last ``seq_len`` bars of the ``top_features`` features the tree models rank highest."""

    seq_len: int = Field(ge=2, description="bars per sequence")
    top_features: int = Field(ge=1, description="features per step, ranked by tree gain on the same training window")
    units: list[int] = Field(min_length=1, description="units of each LSTM layer")
    dropout: float = Field(ge=0, lt=1)
    learning_rate: float = Field(gt=0)
    huber_delta: float = Field(gt=0)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    patience: int = Field(ge=0)


class LabelsConfig(Section):
    kind: Literal["forward_return", "triple_barrier", "excess_return", "cross_sectional_rank"] = Field(
        description="close-to-close log return; the log return at the first barrier touched; the log return minus "
                    "the equal-weight mean of the universe's over the same bars; or its rank among the bar's "
                    "symbols scaled to [-0.5, 0.5] (the last two: targets for choosing stocks, not timing the market)")
    barrier_vol_bars: int = Field(ge=2, description="triple barrier: trailing bars of the daily volatility that scales the barriers")
    profit_target: float = Field(gt=0, description="triple barrier: upper barrier in daily volatilities x sqrt(horizon)")
    stop_loss: float = Field(gt=0, description="triple barrier: lower barrier in daily volatilities x sqrt(horizon)")


class RankingConfig(Section):
    objective: Literal["regression", "rank"] = Field(description="regression: the tree base models regress the target; rank: XGBoost rank:pairwise and LightGBM lambdarank, one query per bar (the networks regress it either way)")
    grades: int = Field(ge=2, le=31, description="rank: relevance grades of the target within a bar (equal-count bins of its rank)")
    ndcg_at: int = Field(ge=1, description="rank: early stopping watches NDCG at this many top rows of a bar (the ranked plan's top_k)")


class SearchConfig(Section):
    schedule: Literal["off", "first", "every"] = Field(description="search at the first retrain only (then reused), at every retrain, or never")
    method: Literal["optuna", "random"] = Field(description="optuna: Optuna's TPE sampler (seeded) over the space's values, trials in a file-based journal; random: Bergstra-Bengio random search over the same space")
    draws: int = Field(ge=1, description="trials (configurations tried) per model and search; a smaller grid caps them at its size")
    batch: int = Field(ge=1, description="optuna: trials asked at once and scored in parallel; the results depend on it, not on the executor")
    folds: int = Field(ge=2, description="purged forward (time-series) folds inside the training window")
    models: list[Literal["xgboost", "lightgbm"]] = Field(description="base models whose parameters are searched")
    space: dict[str, dict[str, list[int | float]]] = Field(description="per model: parameter -> values drawn uniformly")


class EnsembleConfig(Section):
    meta_window_bars: int = Field(ge=1, description="trailing bars of out-of-sample base predictions the meta-learner is fitted on")
    halflife_bars: float = Field(gt=0, description="age in bars at which an out-of-sample row counts half: weights follow recent performance")
    ridge_alpha: float = Field(ge=0, description="ridge penalty of the stacking regression, relative to the total sample weight")
    oof_folds: int = Field(ge=2, description="purged k-fold giving the first window's out-of-fold predictions (no walk-forward history yet)")
    meta_folds: int = Field(ge=2, description="purged folds cross-fitting the meta-learner, so calibration sees out-of-fold scores")
    lower_quantile: float = Field(gt=0, lt=0.5, description="lower bound: this quantile of out-of-fold residuals")
    upper_quantile: float = Field(gt=0.5, lt=1, description="upper bound: this quantile of out-of-fold residuals")


class CalibrationConfig(Section):
    method: Literal["auto", "isotonic", "platt"] = Field(description="auto: isotonic with enough samples, else Platt")
    min_isotonic_samples: int = Field(ge=2)
    isotonic_bin_samples: int = Field(ge=1, description="each step of the isotonic map pools at least this many out-of-fold rows")


class RegimeConfig(Section):
    n_regimes: int = Field(ge=1, description="Gaussian mixture components; regime 0 is the calmest (lowest volatility)")
    vol_bars: int = Field(ge=2, description="bars of the equal-weight index's realised volatility")
    labels: list[str] = Field(min_length=1, description="name of each regime, calmest first (keys of risk.stop_regime_multipliers and risk.regime_risk)")

    @model_validator(mode="after")
    def _one_label_each(self):
        if len(self.labels) != self.n_regimes:
            raise ValueError(f"labels names {len(self.labels)} regimes, n_regimes is {self.n_regimes}")
        return self


class VolatilityConfig(Section):
    p: int = Field(ge=1, description="GARCH(p, q)")
    q: int = Field(ge=1)
    realised_bars: int = Field(ge=2, description="trailing bars of realised volatility: the fallback, and the scale of the bounds")
    min_observations: int = Field(ge=10, description="fewer returns in the window: realised volatility instead of a GARCH fit")


class TimingConfig(Section):
    model: Literal["xgboost", "lightgbm", "dense", "lstm"] = Field(description="regressor of where in the horizon the best entry and exit fall (its parameters: that model's section)")


class StopLossConfig(Section):
    quantile: float = Field(gt=0, lt=1, description="quantile of the maximum adverse excursion within the horizon used as the stop distance (LightGBM quantile regression, [models.lightgbm] parameters)")
    min_stop: float = Field(gt=0, lt=1, description="stop distance floor (fraction of price)")
    max_stop: float = Field(gt=0, lt=1, description="stop distance cap")


class ModelsConfig(Section):
    horizons: list[int] = Field(min_length=1, description="label horizons in bars (intraday: see models.labels.horizons_in_bars)")
    decision_horizon: int = Field(ge=1, description="the horizon the strategy trades: its probability is the confidence; timing and stops look this far")
    base_models: list[Literal["xgboost", "lightgbm", "dense", "lstm"]] = Field(min_length=1, description="ensemble members")
    train_bars: int = Field(ge=2, description="trailing window of bars a model is trained on")
    retrain_every: int = Field(ge=1, description="bars between retrains (walk-forward test length)")
    embargo_bars: int = Field(ge=0, description="gap between the end of a training label and the first bar the model predicts")
    validation_fraction: float = Field(ge=0, lt=1, description="last fraction of the training window held out (purged) for early stopping")
    min_feature_fraction: float = Field(gt=0, le=1, description="a row is a sample only with at least this fraction of finite features")
    max_train_rows: int = Field(ge=0, description="at most this many samples per fit: a seeded random sample of the window's rows when it has more (0: all); bounds a fold's time on wide universes")
    threads: int = Field(ge=1, description="threads of XGBoost, LightGBM and TensorFlow")
    labels: LabelsConfig
    ranking: RankingConfig
    xgboost: XGBoostParams
    lightgbm: LightGBMParams
    dense: DenseParams
    lstm: LSTMParams
    search: SearchConfig
    ensemble: EnsembleConfig
    calibration: CalibrationConfig
    regime: RegimeConfig
    volatility: VolatilityConfig
    timing: TimingConfig
    stoploss: StopLossConfig

    @model_validator(mode="after")
    def _consistent(self):
        if len(set(self.horizons)) != len(self.horizons) or any(h < 1 for h in self.horizons):
            raise ValueError(f"horizons must be distinct and >= 1 (got {self.horizons})")
        if self.decision_horizon not in self.horizons:
            raise ValueError(f"decision_horizon {self.decision_horizon} is not one of horizons {self.horizons}")
        if self.stoploss.min_stop > self.stoploss.max_stop:
            raise ValueError("stoploss.min_stop is above stoploss.max_stop")
        for model, space in self.search.space.items():
            params = getattr(self, model, None)
            if model not in ("xgboost", "lightgbm") or params is None:
                raise ValueError(f"search.space.{model}: only xgboost and lightgbm are searched")
            unknown = sorted(set(space) - set(type(params).model_fields))
            if unknown:
                raise ValueError(f"search.space.{model}: unknown parameter(s) {unknown}")
            empty = sorted(k for k, v in space.items() if not v)
            if empty:
                raise ValueError(f"search.space.{model}: no values for {empty}")
        return self


class LiveConfig(Section):
    """``python run.py live``: Alpaca connection, warm-up, watchdog, journal and recovery."""

    symbols: list[str] = Field(description="symbols traded live; empty: the symbols of data.paths (the backtested universe)")
    timeframe: Literal["1Min", "1Day"] = Field(description="bar size: 1Min streams bars over the websocket, 1Day fetches the day's bar after the close")
    data_feed: Literal["iex", "sip"] = Field(description="Alpaca market data feed (sip needs a subscription)")
    calendar: str = Field(min_length=1, description="exchange_calendars name of the market's sessions (XNYS; tests use 24/7)")
    warmup_bars: int = Field(ge=1, description="history bars per symbol before the first live bar: at least the longest feature warm-up and the strategy's own (checked at start)")
    max_catchup_bars: int = Field(ge=0, description="on start, the most recent unprocessed history bars (this many bar lengths old at most) are traded, not only warmed up")
    bar_complete_seconds: float = Field(ge=0, description="after the first bar of a minute arrives, wait this long for the other symbols' bars")
    daily_bar_delay_seconds: float = Field(ge=0, description="1Day: fetch the day's bar this long after the close")
    stale_after_seconds: float = Field(gt=0, description="watchdog: no bar for this long while the market is open halts new entries")
    poll_seconds: float = Field(gt=0, description="longest wait for a bar before broker updates are handled")
    prewarm_minutes: float = Field(ge=0, description="start a session (history warm-up, reconciliation) this long before the open")
    retry_attempts: int = Field(ge=1, description="REST calls and connection attempts before the broker counts as unreachable")
    retry_min_seconds: float = Field(gt=0, description="first wait of the exponential backoff (REST retries and stream reconnects)")
    retry_max_seconds: float = Field(gt=0, description="longest wait of the exponential backoff")
    request_timeout_seconds: float = Field(gt=0, description="HTTP timeout of one REST call")
    order_sync_seconds: float = Field(gt=0, description="poll open orders, positions and cash this often (catches updates a dropped stream missed)")
    sync_order_lookups: int = Field(ge=1, description="a sync asks about at most this many orders one by one (those in neither Alpaca's open nor its recently closed list; the rest wait for the next sync): with the 4 list, cash and position requests, at most 4 + this many requests per order_sync_seconds")
    sync_recheck_seconds: float = Field(gt=0, description="after a sync sees cash or positions differ from the broker's, the next comes this soon (the broker's are taken when the difference is seen twice with no fill in between)")
    cancel_wait_seconds: float = Field(ge=0, description="an exit waits this long at most for the cancel of the orders holding its shares (then it is sent when they are canceled)")
    thread_switch_seconds: float = Field(gt=0, le=1, description="Python's thread switch interval while trading (sys.setswitchinterval; Python's default is 0.005): how long the bar loop keeps the interpreter before a stream or cancel thread can force it out, so their work waits for the loop's next network wait instead of cutting into a bar's decisions")
    commission_bps: float = Field(ge=0, description="commission the broker charges per side, basis points (Alpaca: none on US stocks)")
    order_id_prefix: str = Field(description="prepended to every client order id (one deployment per prefix); empty: the strategy's name and a dash")
    state_dir: str = Field(min_length=1, description="folder of the journal, the live log and the daily reports")
    journal: str = Field(description="SQLAlchemy URL of the journal (postgresql+psycopg://...); empty: SQLite file journal.sqlite in state_dir")
    sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(description="SQLite durability: NORMAL survives a killed process, FULL also a power cut")
    journal_retry_attempts: int = Field(ge=1, description="a journal write or read that loses its database connection is tried this many times in all (a batch's open transaction is replayed on a new connection) before the error stops the session")
    journal_retry_min_seconds: float = Field(gt=0, description="first wait between journal attempts (then doubling)")
    journal_retry_max_seconds: float = Field(gt=0, description="longest wait between journal attempts")
    retrain_every_days: int = Field(ge=0, description="call the strategy's retrain_now() after the close when this many days passed since the last retrain; 0: never")
    trading_url: str = Field(description="REST base URL override; empty: Alpaca's paper or live URL")
    data_url: str = Field(description="market data REST URL override; empty: Alpaca's")
    trading_stream_url: str = Field(description="trade updates websocket URL override; empty: Alpaca's")
    data_stream_url: str = Field(description="market data websocket URL override; empty: Alpaca's for data_feed")
    news_stream_url: str = Field(pattern=r"^wss?://", description="Alpaca's real-time news websocket (Benzinga headlines); the local test server's for tests")
    metrics_host: str = Field(min_length=1, description="address the Prometheus metrics endpoint listens on (127.0.0.1: this machine only; 0.0.0.0 for a scraper in another container)")
    metrics_port: int = Field(ge=0, le=65535, description="port of the Prometheus metrics endpoint (http://metrics_host:metrics_port/metrics); 0: no metrics")
    drift_psi_threshold: float = Field(gt=0, description="a feature whose population stability index (live values against its training window's) is above this drifts: it counts in trader_features_drifting and raises the feature_drift alert (0.25: the usual threshold of a significant shift)")

    @model_validator(mode="after")
    def _backoff(self):
        if self.retry_min_seconds > self.retry_max_seconds:
            raise ValueError("retry_min_seconds is above retry_max_seconds")
        if self.journal_retry_min_seconds > self.journal_retry_max_seconds:
            raise ValueError("journal_retry_min_seconds is above journal_retry_max_seconds")
        return self


class ReportConfig(Section):
    blueprint_targets: dict[str, float] = Field(description="the blueprint's promises, shown beside what a run achieved")
    leak_alarm_accuracy: float = Fraction
    bootstrap_samples: int = Field(ge=100)
    configurations_tried: int = Field(ge=0, description="configurations of the plan tried by hand on the reported period (settings, strategies, universes), beside the searches' own: the deflated Sharpe counts them in n_trials")
    quantiles: int = Field(ge=2, le=100, description="groups a bar's symbols fall into by score in the walk-forward's cross-sectional evaluation (quantile returns, top-minus-bottom spread, top-quantile turnover)")


class ExecutorConfig(Section):
    """Where the walk-forward's independent training tasks run (``models.executor``). Results do
    not depend on it, so it is left out of the config hash and of metrics.json."""

    kind: Literal["serial", "ray"] = Field(description="serial: in this process, one task after another; ray: as Ray tasks")
    address: str = Field(description="ray: an existing cluster's address (ray start --head prints it); empty: start a local Ray on this machine")
    num_cpus: int = Field(ge=0, description="ray, local only: CPUs the local Ray may use (0: all of them)")


class ReconciliationConfig(Section):
    """The daily reconciliation of a live session against a replay of its bars (``engine.daily_reconciliation``):
    beyond these, the report raises a reconciliation alert."""

    enabled: bool = Field(description="after each live session, replay its recorded bars and write state_dir/reconciliation/DATE.json and .md")
    max_order_differences: int = Field(ge=0, description="orders only live, only in the replay, or differing in size or status tolerated before alerting")
    max_position_differences: int = Field(ge=0, description="symbols whose end-of-session position differs between live and the replay tolerated before alerting")
    max_slippage_bps: float = Field(ge=0.0, description="largest tolerated fill price difference, live against the replay, in basis points (against the trader)")
    max_pnl_difference_fraction: float = Field(ge=0.0, description="largest tolerated session P&L difference, live minus replay, as a fraction of the session's start equity")


AlertRule = Literal["kill_switch", "daily_loss_limit", "stale_feed", "broker_unreachable", "order_rejected",
                    "reconciliation_mismatch", "model_age", "feature_drift", "heartbeat"]


class AlertsConfig(Section):
    """``python run.py live``: alerts through Apprise (``ops.alerts``; docs/live.md, "Alerts"), on when a URL
    is set here, in the TRADER_ALERT_URLS environment variable, or as heartbeat_url."""

    urls: list[str] = Field(description="Apprise URLs alerts go to (slack://, tgram://, mailtos://, json:// ...); tokens are better kept in the TRADER_ALERT_URLS environment variable (whitespace or comma separated), which adds to these")
    rules: list[AlertRule] = Field(description="the rules switched on: kill_switch, daily_loss_limit, stale_feed, broker_unreachable, order_rejected, reconciliation_mismatch, model_age, feature_drift, heartbeat")
    stale_feed_seconds: float = Field(gt=0, description="1Min: no bar received for this long during a session (from the open) raises stale_feed")
    model_max_age_days: float = Field(ge=0, description="model_age: a traded model trained longer ago than this; 0: live.retrain_every_days plus one day (the retrain runs after a close), and when both are 0 the age is not checked")
    heartbeat_seconds: float = Field(gt=0, description="heartbeat: bars received and none decided for this long (a hung loop) raises an alert; and the dead-man ping's interval")
    heartbeat_url: str = Field(description="a dead-man service's ping URL (healthchecks.io ...): GET every heartbeat_seconds while the loop is healthy, so a killed process is noticed; empty: none")
    dedup_seconds: float = Field(ge=0, description="the same rule and key (an order, a day, the feed) is not sent again within this many seconds")
    max_per_hour: int = Field(ge=1, description="at most this many alerts sent an hour; the rest are written to the journal, counted, and summarised in the next one sent")
    check_seconds: float = Field(gt=0, description="the alerts watchdog (stale feed, hung loop, heartbeat ping) looks this often")
    timeout_seconds: float = Field(gt=0, description="HTTP timeout of one heartbeat ping")


class DashboardConfig(Section):
    """``python run.py dashboard``: the web dashboard of a run folder or a live journal (``dashboard``;
    README, "Dashboard"). Tokens are better kept in DASHBOARD_TOKEN and DASHBOARD_READ_TOKEN."""

    host: str = Field(min_length=1, description="address the dashboard binds to; any but a loopback address needs a token")
    port: int = Field(ge=1, le=65535, description="its port")
    token: str = Field(description="the control token: with it a browser may pause, resume, reset the kill switch and flatten; DASHBOARD_TOKEN overrides it; empty and no read_token: read-only, loopback only")
    read_token: str = Field(description="a second token that only reads (a link to share); DASHBOARD_READ_TOKEN overrides it")
    refresh_seconds: float = Field(gt=0, description="the page asks for new data this often")
    stale_after_seconds: float = Field(gt=0, description="a live panel whose data is older than this turns visibly stale")
    status_seconds: float = Field(gt=0, description="the live session publishes its state (gates, risk score, model health) to the journal at most this often")
    chart_points: int = Field(ge=100, description="the equity chart's most points (a year of minute bars is thinned to its shape)")
    log_lines: int = Field(ge=10, description="lines of the session log and decisions.log the Logs view shows")


class Config(Section):
    data: DataConfig
    costs: CostsConfig
    backtest: BacktestConfig
    momentum_breakout: MomentumBreakoutConfig
    ml: MLStrategyConfig
    ml_rank: MLRankConfig
    risk: RiskConfig
    features: FeaturesConfig
    models: ModelsConfig
    live: LiveConfig
    report: ReportConfig
    executor: ExecutorConfig
    reconciliation: ReconciliationConfig
    alerts: AlertsConfig
    dashboard: DashboardConfig

    @model_validator(mode="after")
    def _regimes_known_to_risk(self):
        for table in ("stop_regime_multipliers", "regime_risk"):
            missing = sorted(set(self.models.regime.labels) - set(getattr(self.risk, table)))
            if missing:
                raise ValueError(f"risk.{table} has no value for regime(s) {missing} (models.regime.labels)")
        return self

    @model_validator(mode="after")
    def _ml_rank_within_risk(self):
        # only where ml_rank trades: a file that lowers risk.max_positions for another strategy stays valid
        rank, risk = self.ml_rank, self.risk
        if self.backtest.strategy != "ml_rank":
            return self
        if rank.top_k > risk.max_positions:
            raise ValueError(f"ml_rank.top_k ({rank.top_k}) is above risk.max_positions ({risk.max_positions})")
        if rank.target_exposure > risk.max_total_weight:
            raise ValueError(f"ml_rank.target_exposure ({rank.target_exposure:g}) is above risk.max_total_weight "
                             f"({risk.max_total_weight:g})")
        return self
