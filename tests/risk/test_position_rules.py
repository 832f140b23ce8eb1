import math

from risk.position_rules import EXIT_REASONS, exit_reason, should_halve, target_should_update

BAR = dict(low=99.0, high=101.0, stop=95.0, stop_is_trailing=False, target=110.0,
           signal_reversed=False, bars_held=3, max_hold_bars=20)


def test_no_exit_inside_the_range():
    assert exit_reason(**BAR) is None


def test_each_exit_reason():
    assert exit_reason(**{**BAR, "low": 94.0}) == "stop"
    assert exit_reason(**{**BAR, "low": 94.0, "stop_is_trailing": True}) == "trailing_stop"
    assert exit_reason(**{**BAR, "high": 110.0}) == "target"
    assert exit_reason(**{**BAR, "signal_reversed": True}) == "signal"
    assert exit_reason(**{**BAR, "bars_held": 20}) == "time"
    assert exit_reason(**{**BAR, "stop": None, "target": None, "max_hold_bars": None}) is None


def test_stop_comes_first_when_a_bar_hits_several():
    everything = {**BAR, "low": 90.0, "high": 120.0, "signal_reversed": True, "bars_held": 50}
    assert exit_reason(**everything) == "stop"
    assert exit_reason(**{**everything, "low": 99.0}) == "target"
    assert exit_reason(**{**everything, "low": 99.0, "high": 101.0}) == "signal"
    assert set(EXIT_REASONS) == {"stop", "trailing_stop", "target", "signal", "time"}


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
