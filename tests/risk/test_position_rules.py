import dataclasses
import math

import pytest
from hypothesis import given, strategies as st

from config import load_config
from risk.position_rules import (Exit, Halve, HeldPosition, MoveStop, MoveTarget, PositionState, Prediction,
                                 StartTrailing, manage_position, should_halve, target_should_update, time_is_up)

CFG = load_config()
RISK, RULE = CFG.risk, CFG.ml          # trail at +3% by 2% (ADX > 25), stop moves > 0.5%, targets > 5%, halve > 0.2
HOLD = 5


def held(**change) -> HeldPosition:
    base = dict(state=PositionState(), entry_price=100.0, stop=97.0, target=110.0, size=10, bars_held=2,
                entry_confidence=0.8)
    return HeldPosition(**{**base, **change})


# a prediction that passes the entry rule (P(rise) 0.7, +2%): no exit, no halving
STRONG = Prediction(confidence=0.7, expected_return=0.02, log_return=math.log1p(0.02), upper=math.nan)
WEAK = Prediction(confidence=0.45, expected_return=-0.01, log_return=math.log1p(-0.01), upper=math.nan)


def manage(position, *, close=100.0, high=100.0, prediction=None, momentum=-0.01, adx=10.0, stop_distance=0.03):
    return manage_position(position, close=close, high=high, prediction=prediction, momentum=momentum, adx=adx,
                           stop_distance=stop_distance, risk=RISK, rule=RULE, hold_bars=HOLD)


def test_nothing_to_do_inside_the_plan():
    actions, state = manage(held(), prediction=None)
    assert actions == [] and state == PositionState(highest=100.0)


def test_the_time_limit_counts_from_the_last_entry_signal():
    assert manage(held(bars_held=5))[0] == [Exit("time")]
    actions, state = manage(held(bars_held=5), prediction=STRONG)   # the signal holds again: renewed
    assert not any(isinstance(a, Exit) for a in actions) and state.renewed_at == 5
    assert manage(held(bars_held=10, state=state))[0] == [Exit("time")]
    assert manage(held(bars_held=9, state=state))[0] == []
    assert time_is_up(10, state, HOLD) and not time_is_up(9, state, HOLD)


def test_a_reversed_signal_exits_and_says_so():
    actions, _ = manage(held(), prediction=WEAK)
    assert actions == [Exit("signal", 0.45)] and str(actions[0]) == "exit signal confidence 0.450"
    # below the signal-exit confidence but a positive expected return: held
    held_on = manage(held(), prediction=dataclasses.replace(WEAK, log_return=0.01, expected_return=0.01))[0]
    assert not any(isinstance(a, Exit) for a in held_on)


def test_the_trailing_stop_starts_on_a_gain_in_a_trend():
    trend = dict(momentum=0.05, adx=30.0)
    actions, state = manage(held(), close=103.5, high=104.0, **trend)
    assert actions == [StartTrailing(pytest.approx(103.5 * 0.98), 0.02)] and state.trailing
    assert str(actions[0]) == "trailing stop 2.0%"
    assert manage(held(), close=102.5, high=102.9, **trend)[0] == []            # below +3%
    assert manage(held(), close=103.5, high=104.0, momentum=0.05, adx=20.0)[0] == []   # no trend
    assert manage(held(stop=102.0), close=103.5, high=104.0, **trend)[0] == []  # the trail would sit below the stop
    # the highest high since entry counts, not this bar's
    actions, _ = manage(held(state=PositionState(highest=104.0)), close=102.0, high=101.0, **trend)
    assert actions == [StartTrailing(pytest.approx(102.0 * 0.98), 0.02)]
    assert manage(held(state=PositionState(highest=104.0, trailing=True)), close=103.5, high=104.0, **trend)[0] == []


def test_stop_and_target_move_with_the_prediction():
    up = Prediction(confidence=0.7, expected_return=0.02, log_return=math.log1p(0.02), upper=math.log(1.2))
    actions, _ = manage(held(), close=101.0, high=101.0, prediction=up, stop_distance=0.02)
    assert actions == [MoveStop(pytest.approx(101.0 * 0.98)), MoveTarget(pytest.approx(101.0 * 1.2))]
    assert [str(a) for a in actions] == ["stop 98.98", "target 121.20"]
    # while trailing, the stop is the broker's; the target still moves (the broker drops it)
    actions, _ = manage(held(state=PositionState(trailing=True)), close=101.0, high=101.0, prediction=up,
                        stop_distance=0.02)
    assert actions == [MoveTarget(pytest.approx(121.2))]
    # no bound above the expected return: the target is at the expected return
    assert STRONG.target(100.0) == pytest.approx(102.0)


def test_halve_once_on_a_confidence_drop():
    dropped = Prediction(confidence=0.55, expected_return=0.02, log_return=math.log1p(0.02), upper=math.nan)
    actions, state = manage(held(size=11, target=None), prediction=dropped)
    assert actions == [Halve(5, 6, 0.55, 0.8)] and state.halved
    assert str(actions[0]) == "halve to 6 (confidence 0.550 from 0.800)"
    assert manage(held(size=6, target=None, state=state), prediction=dropped)[0] == []
    assert manage(held(size=1, target=None), prediction=dropped)[0] == []        # one share is not halved


def test_the_state_round_trips_and_reads_the_old_extra_dict():
    state = PositionState(renewed_at=4, highest=104.5, trailing=True, halved=True)
    assert PositionState.from_dict(state.to_dict()) == state
    assert PositionState.from_dict({"renewed_at": 3, "highest": 101.0}) == PositionState(3, 101.0)
    assert PositionState.from_dict({}) == PositionState()


prices = st.floats(50.0, 200.0)
predictions = st.none() | st.builds(
    lambda c, r, u: Prediction(c, math.expm1(r), r, u), st.floats(0.0, 1.0), st.floats(-0.1, 0.1),
    st.floats(-0.1, 0.3) | st.just(math.nan))


@given(bars=st.lists(st.tuples(prices, st.floats(0.0, 0.05), predictions, st.floats(-0.2, 0.2),
                               st.floats(0.0, 60.0), st.floats(0.005, 0.05)), min_size=1, max_size=30),
       entry=prices, stop_pct=st.floats(0.005, 0.05), size=st.integers(1, 1000), entry_confidence=st.floats(0.5, 1.0))
def test_rules_over_a_path(bars, entry, stop_pct, size, entry_confidence):
    """Over any path of bars: an exit is the only action of its bar and ends the position; a stop never
    moves down nor starts above the close; the position is halved once at most; the state's highest
    high never falls."""
    state, stop, target = PositionState(), entry * (1 - stop_pct), entry * 1.05
    halvings = 0
    for bars_held, (close, spread, prediction, momentum, adx, distance) in enumerate(bars, start=1):
        position = HeldPosition(state, entry, stop, target, size, bars_held, entry_confidence)
        actions, after = manage(position, close=close, high=close * (1 + spread), prediction=prediction,
                                momentum=momentum, adx=adx, stop_distance=distance)
        if any(isinstance(a, Exit) for a in actions):
            assert len(actions) == 1
            return
        assert after.highest >= max(entry, close * (1 + spread)) and after.highest >= (state.highest or entry)
        for action in actions:
            if isinstance(action, (StartTrailing, MoveStop)):
                assert action.stop > stop and action.stop < close
                stop = action.stop
            elif isinstance(action, MoveTarget):
                assert action.target > close
                target = action.target
            elif isinstance(action, Halve):
                halvings += 1
                assert action.sell + action.keep == size and action.keep >= action.sell >= 1
                size = action.keep
        assert halvings <= 1 and after.halved == (halvings == 1)
        assert after.trailing == (state.trailing or any(isinstance(a, StartTrailing) for a in actions))
        state = after


def test_target_updates_on_a_move_above_five_percent():
    assert target_should_update(110.0, 116.0, 0.05)      # +5.45%
    assert target_should_update(110.0, 104.0, 0.05)      # -5.45%
    assert not target_should_update(110.0, 115.0, 0.05)  # +4.5%
    assert not target_should_update(110.0, math.nan, 0.05)


def test_halve_once_on_a_confidence_drop_above_the_threshold():
    assert should_halve(0.80, 0.55, 0.2, already_halved=False)
    assert not should_halve(0.80, 0.61, 0.2, already_halved=False)
    assert not should_halve(0.80, 0.40, 0.2, already_halved=True)
    assert not should_halve(0.80, math.nan, 0.2, already_halved=False)
