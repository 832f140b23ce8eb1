"""The ``ml`` plan's rules for an open long position, one bar at a time (the blueprint's position
management), as one pure function: :func:`manage_position`.

It reads what the plan knows of the position (:class:`HeldPosition`, with the :class:`PositionState`
it carries from bar to bar), the bar's close and high, the symbol's :class:`Prediction` at this bar
(or None), the momentum and ADX the trailing rule reads and the model's new stop distance, and
returns the actions in this order (numbers in ``[ml]`` and ``[risk]``):

1. the entry signal holds again: the time limit counts from this bar (``renewed_at``);
2. :class:`Exit` ``time`` once ``hold_bars`` have passed since then, else :class:`Exit` ``signal``
   when P(rise) is below ``ml.signal_exit_confidence`` with a negative expected return. An exit is
   the only action of its bar;
3. :class:`StartTrailing` once the highest high since entry is ``risk.trail_activation`` above the
   entry price, where momentum and ADX say a trailing stop fits (``risk.stops.trailing_stop_fits``)
   and the trail's level (close x (1 - ``risk.trail_pct``)) is above the stop;
4. with a prediction: :class:`MoveStop` up to the model's new stop (not while trailing) when it rose
   by more than ``risk.stop_move_threshold`` of the entry price; :class:`MoveTarget` to the predicted
   target (above the close) when it moved by more than ``risk.target_update_threshold`` of the
   target; :class:`Halve` once, when confidence fell by more than ``risk.confidence_drop_halve`` from
   entry and two shares at least are held.

Each action's ``str`` is its words in the run's ``decisions.log``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from config.schema import MLStrategyConfig, RiskConfig
from risk.stops import stop_should_move, trailing_stop_fits


@dataclass(frozen=True)
class PositionState:
    """What the plan remembers of one position from bar to bar (a live restart restores it)."""

    renewed_at: int = 0            # bars held when the entry signal last held: the time limit counts from there
    highest: float | None = None   # the highest high since entry (None: no bar managed yet)
    trailing: bool = False         # the stop is a stop-trail order (the take-profit is gone)
    halved: bool = False           # the position was halved (once at most)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, saved: dict) -> PositionState:
        """From :meth:`to_dict`'s dict, or from a plan's ``extra`` dict as saved before this type
        existed (the same keys, each present only once its rule had set it)."""
        return cls(**{f.name: saved[f.name] for f in dataclasses.fields(cls) if f.name in saved})


@dataclass(frozen=True)
class HeldPosition:
    """An open position as its rules see it."""

    state: PositionState
    entry_price: float
    stop: float | None              # the stop's level (None: no stop)
    target: float | None            # the take-profit's level (None: none)
    size: int                       # shares held
    bars_held: int
    entry_confidence: float | None  # P(rise) when it was entered


@dataclass(frozen=True)
class Prediction:
    """One symbol's prediction at this bar, at the decision horizon."""

    confidence: float        # calibrated P(rise)
    expected_return: float   # expected simple return
    log_return: float        # expected log return (the models' own)
    upper: float             # the ensemble's upper bound, a log return (NaN: none)

    def passes_entry(self, rule: MLStrategyConfig) -> bool:
        """The entry signal: P(rise) at least ``ml.min_confidence`` and an expected return above
        ``ml.min_expected_return``."""
        return bool(self.confidence >= rule.min_confidence and self.expected_return > rule.min_expected_return)

    @property
    def expected_value(self) -> float:
        """What candidates are ranked by: P(rise) x expected return."""
        return self.confidence * self.expected_return

    def target(self, price: float) -> float:
        """The take-profit for ``price``: at the upper bound, or at the expected return when there is
        no bound above it."""
        if not math.isfinite(self.upper) or self.upper <= self.log_return:
            return price * (1 + self.expected_return)
        return price * math.exp(self.upper)


@dataclass(frozen=True)
class Exit:
    reason: str                      # "time" or "signal"
    confidence: float | None = None  # P(rise) that reversed the signal

    def __str__(self) -> str:
        return f"exit {self.reason}" + (f" confidence {self.confidence:.3f}" if self.confidence is not None else "")


@dataclass(frozen=True)
class StartTrailing:
    stop: float       # where the stop-trail order starts
    trail_pct: float

    def __str__(self) -> str:
        return f"trailing stop {self.trail_pct:.1%}"


@dataclass(frozen=True)
class MoveStop:
    stop: float

    def __str__(self) -> str:
        return f"stop {self.stop:.2f}"


@dataclass(frozen=True)
class MoveTarget:
    target: float

    def __str__(self) -> str:
        return f"target {self.target:.2f}"


@dataclass(frozen=True)
class Halve:
    sell: int                 # shares sold
    keep: int                 # shares left
    confidence: float
    entry_confidence: float

    def __str__(self) -> str:
        return f"halve to {self.keep} (confidence {self.confidence:.3f} from {self.entry_confidence:.3f})"


Action = Exit | StartTrailing | MoveStop | MoveTarget | Halve


def time_is_up(bars_held: int, state: PositionState, hold_bars: int) -> bool:
    """``hold_bars`` have passed since the entry signal last held (since entry, when it never held again)."""
    return bars_held - state.renewed_at >= hold_bars


def manage_position(position: HeldPosition, *, close: float, high: float, prediction: Prediction | None,
                    momentum: float, adx: float, stop_distance: float | None, risk: RiskConfig,
                    rule: MLStrategyConfig, hold_bars: int) -> tuple[list[Action], PositionState]:
    """The actions for ``position`` at this bar and its state after them (see the module docstring).

    ``stop_distance``: the model's initial stop distance at this bar (``risk.stops.initial_stop_pct``),
    read only with a prediction; ``rule``: the entry and signal-exit rule (``[ml]``)."""
    state = position.state
    if prediction is not None and prediction.passes_entry(rule):
        state = dataclasses.replace(state, renewed_at=position.bars_held)
    if time_is_up(position.bars_held, state, hold_bars):
        return [Exit("time")], state
    if prediction is not None and prediction.confidence < rule.signal_exit_confidence and prediction.log_return < 0:
        return [Exit("signal", prediction.confidence)], state
    entry = position.entry_price
    highest = max(entry if state.highest is None else state.highest, high)
    state = dataclasses.replace(state, highest=highest)
    stop, actions = position.stop, []
    if not state.trailing and highest >= entry * (1 + risk.trail_activation) \
            and trailing_stop_fits(momentum, adx, adx_min=risk.trail_adx_min, min_momentum=risk.trail_min_momentum) \
            and close * (1 - risk.trail_pct) > (stop or 0.0):
        stop = close * (1 - risk.trail_pct)
        state = dataclasses.replace(state, trailing=True)
        actions.append(StartTrailing(stop, risk.trail_pct))
    if prediction is None:
        return actions, state
    if not state.trailing and stop is not None:
        optimal = close * (1 - stop_distance)
        if stop_should_move(stop, optimal, entry, risk.stop_move_threshold):
            actions.append(MoveStop(optimal))
    predicted = prediction.target(close)
    if position.target is not None and predicted > close \
            and target_should_update(position.target, predicted, risk.target_update_threshold):
        actions.append(MoveTarget(predicted))
    if should_halve(position.entry_confidence or 0.0, prediction.confidence, risk.confidence_drop_halve,
                    already_halved=state.halved) and position.size >= 2:
        half = position.size // 2
        actions.append(Halve(half, position.size - half, prediction.confidence, position.entry_confidence))
        state = dataclasses.replace(state, halved=True)
    return actions, state


def target_should_update(current_target: float, predicted_target: float, threshold: float) -> bool:
    """True when the predicted target differs from the current one by more than ``threshold`` of it."""
    if not (math.isfinite(predicted_target) and math.isfinite(current_target) and current_target > 0):
        return False
    return abs(predicted_target - current_target) > threshold * current_target


def should_halve(entry_confidence: float, confidence: float, max_drop: float, *, already_halved: bool) -> bool:
    """True when confidence fell by more than ``max_drop`` from its value at entry; once per position."""
    return bool(not already_halved and entry_confidence - confidence > max_drop)  # NaN: False
