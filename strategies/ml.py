"""The ML strategies: the ensemble of ``models`` trained walk-forward inside the strategy
(``strategies.signals.WalkForwardSignals``: retrain every ``models.retrain_every`` bars on the
trailing ``models.train_bars``, purged and embargoed), reading the registry's features as one row
per bar from the strategy's ``FeatureHub``.

- ``ml`` (:class:`MLTradingPlan`, the default strategy): the blueprint's trading plan, below.
- ``ml_equal_weight`` (:class:`MLEqualWeight`): the same entry signal, equal weights, exit at the
  horizon; the plan's simplest baseline.
- :class:`RiskGatedPlan`: what ``ml`` and the ranked plan ``ml_rank`` (``strategies.ml_rank``)
  share: the risk gates, the risk score's verdict, the initial stop, the decision log, the live state.

A candidate, for both: the calibrated probability of a rise over the decision horizon (the
confidence) is at least ``ml.min_confidence`` and the expected simple return over that horizon is
above ``ml.min_expected_return``.

The plan, each bar (numbers in ``[ml]`` and ``[risk]``):

1. risk gates: the daily loss limit blocks new entries for the rest of the day; the drawdown kill
   switch flattens every position (exit ``kill_switch``) and halts entries for the rest of the run
   (``risk.limits``);
2. open positions (``risk.position_rules.manage_position``): exit at the time limit (``time``:
   ``ml.max_hold_bars`` since the entry signal last held for the symbol) or on a reversed signal
   (``signal``: P(rise) below ``ml.signal_exit_confidence`` with a negative expected return); else
   switch the stop to a stop-trail order once the gain reaches ``risk.trail_activation`` where
   momentum and ADX say a trailing stop fits (the take-profit is then dropped: see
   ``replace_exits``); raise the stop to the model's new optimal stop when it moved by more than
   ``risk.stop_move_threshold`` of the entry; move the target when the prediction moves it by more
   than ``risk.target_update_threshold``; halve once when confidence fell by more than
   ``risk.confidence_drop_halve`` from entry. The stop and the target are real orders (stop /
   stop-trail and limit, one cancelling the other): the broker fills the ``stop``,
   ``trailing_stop`` and ``target`` exits;
3. candidates ranked by expected value (confidence x expected return) fill the free slots
   (``risk.max_positions``; ``strategies.ranking.fill_slots``); each gets its initial stop
   (``risk.stops.initial_stop_pct``: the stop-loss model's stop, scaled by 20-bar volatility and the
   regime, within 0.5-5%) and a target at the ensemble's upper bound over the decision horizon;
4. sizing: the cvxpy mean-variance weights with quarter-Kelly caps over candidates and holdings
   (``risk.portfolio.MeanVarianceSizer``); the risk manager's score (VaR, correlation, sector, liquidity,
   regime) approves each entry or not and applies its adjustments (half size, one bar's delay, a
   limit order); whole shares under 2% risk per trade, at least $1000, within the cash left
   (``risk.sizing.entry_shares``).

Each decision is one line in the run's ``decisions.log`` (and the ``decisions`` debug logger).
"""
from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import sys

import numpy as np
import pandas as pd

from common.errors import UserError
from features.from_config import engine_from_config, registry_from_config
from indicators.feature_hub import FeatureHub
from risk.manager import Candidate, PortfolioView, RiskManager
from risk.portfolio import MeanVarianceSizer
from risk.position_rules import Exit, Halve, HeldPosition, MoveTarget, Prediction, manage_position, time_is_up
from risk.sizing import cost_rate, entry_shares, equal_weight_sizes
from risk.stops import initial_stop_pct
from ops.controls import ControlRefused
from strategies.base import PortfolioStrategy
from strategies.ranking import fill_slots
from strategies.signals import WalkForwardSignals

log = logging.getLogger("strategy")
decisions_log = logging.getLogger("decisions")

# the registry's features the stop rules read (blueprint: ADX > 25 and positive momentum to trail)
ADX_FEATURE, MOMENTUM_FEATURE = "adx_14", "ret_20"


class MLStrategy(PortfolioStrategy):
    """What the ML strategies share: features, walk-forward predictions, the entry signal."""

    # given by benchmarks and tests that run the same bars again: (WalkForwardResult, PanelData) skips
    # the training; the features' FeaturePanel skips their batch computation. model: a registry model
    # to trade instead of training one ("NAME@id" of models/registry/NAME, as `run.py live --model` gives it)
    params = (("walk_forward", None), ("feature_panel", None), ("model", None))
    trains_models = True
    # the plan reads the prediction as a return (thresholds, targets): a rank label predicts none
    reads_returns = True

    @classmethod
    def required_bars(cls, cfg) -> int:
        """Bars after which ``models.min_feature_fraction`` of the features are past their warm-up
        (counted in the symbol's own bars): a symbol with fewer is never predicted."""
        warmups = sorted(f.warmup for f in registry_from_config(cfg) if not f.calendar_clock)
        k = math.ceil(cfg.models.min_feature_fraction * len(warmups)) - 1
        return warmups[max(k, 0)] + 1

    @classmethod
    def bars_before_first_training(cls, cfg, registry) -> int:
        """Bars before the one where the strategy, training its own model (no registry model), first
        trains and predicts, when every symbol's history starts together (a live start): that bar is
        ``WalkForward.first_retrain``'s, the first usable bar plus ``models.train_bars``, where a bar is
        usable once ``models.min_feature_fraction`` of all the features are past their warm-up
        (``models.dataset.valid_rows``, calendar-clock features included). ``registry``: the features
        the strategy computes (``features.from_config.registry_from_config``)."""
        warmups = sorted(feature.warmup for feature in registry)
        n = len(warmups)
        # the fewest finite features valid_rows accepts (its float comparison, not a rounded product)
        enough = next(count for count in range(1, n + 1) if count / n >= cfg.models.min_feature_fraction)
        return warmups[enough - 1] + cfg.models.train_bars

    def __init__(self):
        super().__init__()
        if self.reads_returns and self.cfg.models.labels.kind == "cross_sectional_rank":
            raise UserError(f"strategy {self.cfg.backtest.strategy} reads the models' predictions as returns, and "
                            "models.labels.kind = \"cross_sectional_rank\" predicts ranks: use a return label "
                            "(forward_return, triple_barrier, excess_return) or --strategy ml_rank")
        engine = engine_from_config(self.cfg, [d._name for d in self.datas])
        self.features = FeatureHub(self, engine, panel=self.p.feature_panel)
        self.signals = WalkForwardSignals(self.cfg, self.features, seed=self.cfg.backtest.seed,
                                          progress=self.cfg.backtest.progress and sys.stderr.isatty(),
                                          given=self.p.walk_forward)
        models = self.cfg.models
        self.decision = models.horizons.index(models.decision_horizon)
        self.hold_bars = self.cfg.ml.max_hold_bars or models.decision_horizon
        self.predictions = None
        self.by_name = {d._name: d for d in self.datas}
        self._monitor = None         # ops.drift.ModelMonitor, built by the first monitoring() (live)
        self._monitored = (None, -1)  # (the model monitored, the last bar monitored)
        self._model_trained_at: dt.datetime | None = None
        self._training_window: list[str] | None = None  # first and last bar of the traded model's training rows
        if self.p.model is not None:
            self._load_registry_model(self.p.model)

    def next(self):
        # every bar, also before --start: bar by bar, the models see each bar once and in order
        self.predictions = self.signals.current()
        super().next()

    def _load_registry_model(self, model_id: str) -> None:
        from models import registry

        name = model_id.split("@")[0]
        predictor, _ = registry.load(registry.REGISTRY_ROOT / name, self.features.names,
                                     self.features.engine.registry.hash())
        self.signals.use_model(predictor, model_id)
        manifest = registry.REGISTRY_ROOT / name / registry.MANIFEST
        self._model_trained_at = dt.datetime.fromtimestamp(manifest.stat().st_mtime, dt.timezone.utc)
        log.info("trading registry model %s", model_id)

    def bar_predictions(self) -> tuple[str, list[tuple[str, dict]]] | None:
        """The bar's predictions, each symbol's with the model's id (the live journal records them)."""
        p = self.predictions
        if p is None:
            return None
        model_id = self.signals.model_id or f"walk-forward@{self.signals.walk.predictor.fitted_at}"
        return model_id, [(self.features.datas[j]._name, {
            "confidence": float(p.confidence[i]),
            "expected_return": float(np.expm1(p.expected_return[i, self.decision])),  # as expected_return(i)
            "stop_distance": float(p.stop_distance[i]), "regime": int(p.regime[i]),
            "upper": float(p.upper[i, self.decision]), "lower": float(p.lower[i, self.decision])})
            for i, j in enumerate(p.symbols)]

    def monitoring(self) -> dict:
        """The bar's confidences, the calibration error of the predictions resolved so far, each
        feature's PSI over the last ``models.retrain_every`` bars against the traded model's training
        rows (``ops.drift.ModelMonitor``: bin edges once per fit, then counts per bar), the model's id
        and fit time. Live only (the live session calls it after each bar)."""
        from ops.drift import ModelMonitor

        p, data, predictor = self.predictions, self.signals.data, self.signals.walk.predictor
        if data is None or predictor.fitted_at is None or (p is None and self._monitored[0] is None):
            return {}  # nothing predicted yet (a registry model's reference rows: the history before its first)
        t = self.features.calendar_index()
        models = self.cfg.models
        if self._monitor is None:
            self._monitor = ModelMonitor(self.features.names, horizon=models.decision_horizon,
                                         window=models.retrain_every)
        monitor, fit = self._monitor, (id(predictor), predictor.fitted_at)
        if self._monitored[0] != fit:  # a new model: its training rows (a registry model's: this history's)
            lo, hi = (predictor.train_bars_range if self.signals.model_id is None
                      else (max(0, t - models.train_bars), t - 1))
            monitor.refit(data.values[lo: hi + 1].reshape(-1, data.values.shape[2]), n_symbols=data.values.shape[1])
            if data.times is not None:
                self._training_window = [data.times[lo].isoformat(), data.times[hi].isoformat()]
            if self.signals.model_id is None:
                self._model_trained_at = dt.datetime.now(dt.timezone.utc)
        if self._monitored[1] != t:
            monitor.add_bar(data.values[t])
            if p is not None:
                monitor.add_predictions(t, p.symbols, p.confidence)
            monitor.resolve(t, data.close)
        self._monitored = (fit, t)
        model_id = self.signals.model_id or f"walk-forward@{predictor.fitted_at}"
        return {"confidences": [] if p is None else p.confidence.tolist(),
                "calibration_error": monitor.calibration.error() if monitor.calibration.resolved else None,
                "feature_drift_psi": monitor.drift(), "model_id": model_id,
                "model_trained_at": self._model_trained_at, "model_training_window": self._training_window}

    def after_orders(self) -> None:
        """The prediction's outputs only the record reads (``WalkForwardSignals.complete_record``)."""
        self.signals.complete_record()

    def retrain_now(self) -> None:
        """The live runner's scheduled retrain (``live.retrain_every_days``), after the close."""
        info = self.signals.retrain_now()
        if info is not None:
            log.info("retrained on %d samples", info["n_train"])

    def prediction_rows(self) -> dict[str, int]:
        """symbol -> its row in ``self.predictions`` (symbols predicted at this bar)."""
        p = self.predictions
        if p is None:
            return {}
        return {self.features.datas[j]._name: i for i, j in enumerate(p.symbols)}

    def expected_return(self, i: int) -> float:
        """Expected simple return over the decision horizon of prediction row ``i``."""
        return float(np.expm1(self.predictions.expected_return[i, self.decision]))

    def prediction(self, i: int) -> Prediction:
        """Prediction row ``i`` at the decision horizon."""
        p, h = self.predictions, self.decision
        return Prediction(float(p.confidence[i]), self.expected_return(i), float(p.expected_return[i, h]),
                          float(p.upper[i, h]))

    def candidates(self, rows: dict[str, int]) -> list[tuple[str, int]]:
        """(symbol, row) of the symbols that pass the entry signal, not held, with their warm-up."""
        out = []
        for name, i in rows.items():
            if name in self.positions_plan or not self.tradable(self.by_name[name]):
                continue
            if self.prediction(i).passes_entry(self.cfg.ml):
                out.append((name, i))
        return out

    # ---- what the run's report reads ------------------------------------------------------------
    @property
    def search_journal(self):
        """Optuna's journal of the run's hyperparameter search trials (a file, once a search ran)."""
        return self.signals.walk.search_journal

    def walk_forward(self):
        """(``WalkForwardResult``, ``PanelData``) of the run, or None when no model was fitted."""
        result = self.signals.result()
        return None if result is None else (result, self.signals.labelled_data())


class MLEqualWeight(MLStrategy):
    """``ml_equal_weight``: the most confident candidates at 1/max_positions of equity each, held to
    the horizon. No stops: the baseline that shows what the plan's rules add."""

    def decide(self, now, fresh):
        for d in fresh:
            plan = self.positions_plan.get(d._name)
            if plan is not None and plan.entry_datetime is not None and not plan.exiting \
                    and time_is_up(plan.bars_held, plan.state, self.hold_bars):
                self.exit_position(d, "time")
        risk, p = self.cfg.risk, self.predictions
        rows = dict(self.candidates(self.prediction_rows()))
        chosen = fill_slots({name: float(p.confidence[i]) for name, i in rows.items()},
                            risk.max_positions - self.open_and_pending())
        if not chosen:
            return
        sizes = equal_weight_sizes([(name, self.by_name[name].close[0]) for name in chosen],
                                   equity=self.broker.getvalue(), cash=self.broker.getcash() - self.committed_cash(),
                                   weight=min(1.0 / risk.max_positions, risk.max_position_weight),
                                   min_position_value=risk.min_position_value, costs=cost_rate(self.cfg.costs))
        for name, size in sizes:
            i = rows[name]
            self.enter_long(self.by_name[name], size, stop_price=None, reason="ml", confidence=float(p.confidence[i]),
                            expected_return=self.expected_return(i))


class RiskGatedPlan(MLStrategy):
    """What the plans that trade through the risk manager share (``ml``, ``ml_rank``): the account's
    gates (the daily loss limit, the drawdown kill switch that flattens and halts), the risk score's
    verdict on each entry with its delay, the initial stop, the regime, the trailing returns and the
    liquidity the risk score reads, the decision log, and the state a live restart restores."""

    def __init__(self):
        super().__init__()
        from feeds.loader import load_sector_map

        cfg = self.cfg
        self.risk = RiskManager(cfg.risk)
        sectors = load_sector_map(cfg.data.sector_map) if cfg.data.sector_map else {}
        self.sectors = pd.Series({d._name: sectors.get(d._name.upper()) for d in self.datas}, dtype=object)
        self.known_sectors = self.sectors.dropna().to_dict()   # symbol -> sector, those the map has
        self._symbols = pd.Index(self.features.engine.symbols)  # the returns' columns, built once
        self.regime_labels = cfg.models.regime.labels
        self.halted: dict | None = None      # the kill switch: when and why
        self.delayed: dict[str, int] = {}    # symbol -> calendar bar from which its delayed entry may go
        self.decision_lines: list[str] = []
        self._blocked_day = None
        self.bar_risk_scores: list[float] = []  # the risk manager's scores of this bar's entry candidates
        self.bar_risk_components: list[dict[str, float]] = []  # and the parts of each score

    def next(self):
        self.bar_risk_scores, self.bar_risk_components = [], []
        super().next()

    def monitoring(self) -> dict:
        """The model's figures (``MLStrategy.monitoring``), the gates' state and the bar's mean risk score."""
        scores = self.bar_risk_scores
        return {**super().monitoring(), "kill_switch_tripped": self.risk.kill_switch.tripped,
                "daily_loss_limit_reached": self.risk.daily_loss.blocked,
                "risk_score": float(np.mean(scores)) if scores else None}

    def risk_figures(self) -> dict:
        """The kill switch's and the daily loss limit's figures at the last bar (``ops.status``)."""
        switch, daily = self.risk.kill_switch, self.risk.daily_loss
        equity = daily.last_equity
        return {"kill_switch": {"tripped": switch.tripped, "limit": switch.limit, "peak_equity": switch.peak_equity,
                                "drawdown": switch.drawdown(equity) if equity is not None else None,
                                "tripped_at": switch.tripped_at, "reason": switch.reason or None},
                "daily_loss": {"blocked": daily.blocked, "limit": daily.limit, "day": daily.day,
                               "day_start_equity": daily.day_start_equity, "day_loss": daily.day_loss,
                               "reason": daily.reason or None},
                # the mean of each part of the risk score over the bar's entry candidates (None: none)
                "risk_components": pd.DataFrame(self.bar_risk_components).mean().to_dict()
                if self.bar_risk_components else None}

    def reset_kill_switch(self, equity: float) -> str:
        """An operator's reset (``ops.controls``), before this bar's decision: the latch cleared, its
        peak restarted at ``equity`` (``DrawdownKillSwitch.reset``), entries allowed again from this
        bar; the state saved after the bar carries it, so a restart does not trip it again."""
        switch = self.risk.kill_switch
        if not switch.tripped:
            drawdown = switch.drawdown(equity)
            raise ControlRefused(f"the kill switch is not tripped (drawdown {drawdown:.2%}, limit {switch.limit:.2%})")
        was = switch.reason
        switch.reset(equity)
        self.halted = None
        self._decision(self.now, "-", f"KILL SWITCH RESET by an operator at equity {equity:,.2f}: entries allowed")
        log.warning("%s kill switch reset at equity %.2f (it was: %s)", self.now, equity, was)
        return (f"kill switch reset: its peak restarts at equity {equity:,.2f}; entries allowed from this bar "
                f"(was: {was})")

    # ---- the gates and the decision log -------------------------------------------------------
    def _decision(self, now, symbol: str, text: str) -> None:
        line = f"{now:%Y-%m-%d %H:%M} {symbol} {text}"
        self.decision_lines.append(line)
        decisions_log.debug(line)

    def _flatten(self, now, reason: str) -> None:
        if self.halted is None:
            self.halted = {"datetime": str(now), "reason": reason}
            log.warning("%s kill switch: %s; flattening and halting new entries for the rest of the run "
                        "(live, it survives restarts: a changed risk.max_drawdown clears it)", now, reason)
            self._decision(now, "-", f"KILL SWITCH {reason}: flatten, halt")
        for symbol, plan in list(self.positions_plan.items()):
            d = self.by_name[symbol]
            if plan.entry_datetime is None:
                if plan.entry_order.alive():
                    self.cancel(plan.entry_order)
            elif not plan.exiting:
                self.exit_position(d, "kill_switch")

    def _entries_blocked(self, now, gate) -> bool:
        """Whether the daily loss limit blocks new entries at this bar (said once a day in the log)."""
        if gate.allowed:
            return False
        if self._blocked_day != now.date():
            self._blocked_day = now.date()
            self._decision(now, "-", f"no new entries: {gate.reason}")
        return True

    def _approve(self, now, t: int, candidate: Candidate, portfolio: PortfolioView):
        """The risk manager's verdict on an entry at calendar bar ``t``: None when it is rejected or
        waits out a delay (each logged once), else the approved ``RiskAssessment`` (its size
        multiplier and limit order apply). A delayed entry is approved at its bar without a second delay."""
        name = candidate.symbol
        assessment = self.risk.assess(candidate, portfolio)
        self.bar_risk_scores.append(assessment.score)
        self.bar_risk_components.append(assessment.components)
        if not assessment.approved:
            self._decision(now, name, f"rejected score {assessment.score:.2f}: {'; '.join(assessment.reasons)}")
            return None
        if assessment.delay_bars and name not in self.delayed:
            self.delayed[name] = t + assessment.delay_bars
            self._decision(now, name, f"delayed {assessment.delay_bars} bar(s): {'; '.join(assessment.reasons)}")
            return None
        if t < self.delayed.get(name, t):
            return None
        self.delayed.pop(name, None)
        return assessment

    # ---- what the risk rules read -------------------------------------------------------------
    def _stop_pct(self, d, i: int) -> float:
        """Initial stop distance for prediction row i: the stop-loss model's, scaled (risk.stops)."""
        n = self.cfg.risk.stop_volatility_bars
        closes = np.asarray(d.close.get(size=n + 1), dtype=float)
        vol = float(np.std(np.diff(np.log(closes)), ddof=1)) if len(closes) == n + 1 else math.nan
        return initial_stop_pct(float(self.predictions.stop_distance[i]), vol, self._regime(i), self.cfg.risk)

    def _regime(self, i: int) -> str | None:
        r = int(self.predictions.regime[i])
        return self.regime_labels[r] if 0 <= r < len(self.regime_labels) else None

    def _returns(self) -> pd.DataFrame:
        """Per-bar simple returns of every symbol up to this bar (the risk rules' history)."""
        r = self.cfg.risk
        t = self.features.calendar_index()
        bars = max(r.covariance_bars, r.var_bars, r.correlation_bars) + 1
        close = self.signals.data.close[max(0, t - bars + 1): t + 1]
        # pandas' pct_change(fill_method=None).iloc[1:] in numpy: the same numbers, without two frames a bar
        return pd.DataFrame(close[1:] / close[:-1] - 1.0, index=pd.RangeIndex(1, len(close)), columns=self._symbols)

    def _average_dollar_volume(self, d) -> float:
        n = self.cfg.risk.adv_bars
        if len(d) < n:
            return math.nan
        return float(np.mean(np.asarray(d.close.get(size=n)) * np.asarray(d.volume.get(size=n))))

    # ---- live restarts ------------------------------------------------------------------------
    def export_state(self) -> dict:
        """The risk gates and the kill switch's verdict (per-position state is in the plans)."""
        return {"risk": self.risk.to_dict(), "halted": self.halted}

    def import_state(self, state: dict) -> None:
        self.risk.load_state(state["risk"])
        # a latch cleared by a changed risk.max_drawdown clears its record too
        self.halted = state.get("halted") if self.risk.kill_switch.tripped else None


class MLTradingPlan(RiskGatedPlan):
    """``ml``: the blueprint's trading plan (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self.mean_variance = MeanVarianceSizer(self.cfg.risk)
        names = self.features.names
        self._adx, self._momentum = names.index(ADX_FEATURE), names.index(MOMENTUM_FEATURE)

    # ---- one bar ------------------------------------------------------------------------------
    def decide(self, now, fresh):
        gate = self.risk.update_equity(now, self.broker.getvalue())
        if gate.flatten:
            self._flatten(now, gate.reason)
            return
        rows = self.prediction_rows()
        self._manage(fresh, rows)
        if self._entries_blocked(now, gate):
            return
        self._enter(now, rows)

    # ---- open positions -----------------------------------------------------------------------
    def _manage(self, fresh, rows) -> None:
        """Each open position's rules at this bar (``risk.position_rules.manage_position``), acted on."""
        for d in fresh:
            plan = self.positions_plan.get(d._name)
            if plan is None or plan.entry_datetime is None or plan.exiting:
                continue
            i = rows.get(d._name)
            features = self.features.row(d)
            position = HeldPosition(plan.state, plan.entry_price, plan.stop_price, plan.target_price,
                                    int(self.getposition(d).size), plan.bars_held, plan.confidence)
            actions, plan.state = manage_position(
                position, close=float(d.close[0]), high=float(d.high[0]),
                prediction=None if i is None else self.prediction(i),
                momentum=features[self._momentum], adx=features[self._adx],
                stop_distance=None if i is None else self._stop_pct(d, i),
                risk=self.cfg.risk, rule=self.cfg.ml, hold_bars=self.hold_bars)
            self._act(d, plan, actions, position.size)

    def _act(self, d, plan, actions, size: int) -> None:
        """Orders for one position's actions: an exit; else a sale of half, then the stop and target
        orders placed anew for the shares left (one line in the decision log). With no action, a
        trailing stop's level is read back from the broker, which trails it."""
        if actions and isinstance(actions[0], Exit):
            self.exit_position(d, actions[0].reason)
            if actions[0].reason == "signal":   # a time exit has no line of its own
                self._decision(self.now, d._name, str(actions[0]))
            return
        if actions:
            stop, target = plan.stop_price, plan.target_price
            for action in actions:
                if isinstance(action, Halve):
                    self._tag(self.sell(data=d, size=action.sell, exectype=self._entry_exectype), d._name, "reduce")
                    size = plan.size = action.keep
                elif isinstance(action, MoveTarget):
                    target = action.target
                else:   # StartTrailing, MoveStop
                    stop = action.stop
            self.replace_exits(d, plan, size=size, stop_price=stop, target_price=target, trailing=plan.state.trailing)
            self._decision(self.now, d._name, "; ".join(map(str, actions)))
        elif plan.state.trailing:
            order = next((c for c in plan.children if c.exectype == c.StopTrail and c.alive()), None)
            if order is not None and order.created.price:
                self.stop_levels[d._name] = plan.stop_price = float(order.created.price)

    # ---- new entries --------------------------------------------------------------------------
    def _enter(self, now, rows) -> None:
        """Candidates by expected value fill the free slots; each the risk manager approves is sized
        and bought, with its stop and target."""
        risk = self.cfg.risk
        t = self.features.calendar_index()
        self.delayed = {s: bar for s, bar in self.delayed.items() if bar >= t}   # a lapsed delay is forgotten
        predictions = {name: self.prediction(i) for name, i in self.candidates(rows)}
        chosen = fill_slots({name: q.expected_value for name, q in predictions.items()},
                            risk.max_positions - self.open_and_pending())
        if not chosen:
            return
        equity = self.broker.getvalue()
        # weights of what is held or on its way (a pending entry at its planned size)
        holdings = {s: plan.size * float(self.by_name[s].close[0]) / equity for s, plan in self.positions_plan.items()}
        stop_pct = {name: self._stop_pct(self.by_name[name], rows[name]) for name in chosen}
        returns = self._returns()
        weights = self._target_weights(now, rows, chosen, holdings, stop_pct, returns)
        cash = self.broker.getcash() - self.committed_cash()
        room = risk.max_total_weight - sum(holdings.values())
        regime = self._regime(rows[chosen[0]])
        sectors = self.known_sectors
        for name in chosen:
            d, prediction = self.by_name[name], predictions[name]
            weight = min(float(weights.get(name, 0.0)), room)
            if weight <= 0:
                continue
            price = float(d.close[0])
            adv = self._average_dollar_volume(d)
            assessment = self._approve(now, t, Candidate(name, weight, self.sectors.get(name), adv),
                                       PortfolioView(equity, holdings, sectors, returns, regime))
            if assessment is None:
                continue
            weight *= assessment.size_multiplier
            size = entry_shares(weight, equity=equity, price=price, stop_distance_pct=stop_pct[name], cash=cash,
                                costs=cost_rate(self.cfg.costs), risk=risk)
            if size == 0:
                continue
            stop, target = price * (1 - stop_pct[name]), prediction.target(price)
            limit = price if assessment.use_limit_order else None
            self.enter_long(d, size, stop_price=stop, target_price=target, reason="ml",
                            confidence=prediction.confidence, expected_return=prediction.expected_return,
                            limit_price=limit)
            self._decision(now, name, f"BUY size {size} entry {price:.2f} target {target:.2f} stop {stop:.2f} "
                                      f"confidence {prediction.confidence:.3f} "
                                      f"expected {prediction.expected_return:.4f} "
                                      f"weight {weight:.4f} risk score {assessment.score:.2f}"
                                      + (" limit order" if limit else ""))
            cash -= size * price
            room -= size * price / equity
            holdings[name] = size * price / equity

    def _target_weights(self, now, rows, chosen: list[str], holdings: dict[str, float], stop_pct: dict[str, float],
                        returns: pd.DataFrame) -> pd.Series:
        """The mean-variance weights, Kelly-capped, of the chosen candidates and the holdings: holdings
        join the problem (their covariance and budget); the plan neither adds to nor trims them."""
        p, risk = self.predictions, self.cfg.risk
        names = list(dict.fromkeys([*holdings, *chosen]))
        # every series on one object index: building a string index costs each series a fraction of a ms
        on = functools.partial(pd.Series, index=pd.Index(names, dtype=object), dtype=float)
        gain = [self.expected_return(rows[name]) if name in rows else 0.0 for name in names]
        per_bar = [g / self.cfg.models.decision_horizon for g in gain]
        confidence = [float(p.confidence[rows[name]]) if name in rows else 0.5 for name in names]
        stops = [stop_pct.get(name, risk.stop_max) for name in names]
        allocation = self.mean_variance.weights(on(per_bar), returns, self.sectors, p_win=on(confidence),
                                                expected_gain=on(gain), stop_distance=on(stops),
                                                current_weights=on([holdings.get(name, 0.0) for name in names]),
                                                max_names=risk.max_positions)
        if allocation.fallback_used:
            self._decision(now, "-", f"sizing fallback: {allocation.message}")
        return allocation.weights
