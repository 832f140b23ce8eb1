import datetime as dt
import json
import math

import pandas as pd
import pytest
from hypothesis import given, strategies as st

from risk.limits import DailyLossLimit, DrawdownKillSwitch, entries_allowed
from tests.risk.conftest import DATA

START = dt.datetime(2024, 1, 2, 9, 30)

# a path of (minutes since the previous update, equity return over that step)
steps = st.lists(st.tuples(st.integers(0, 24 * 60), st.floats(-0.08, 0.08)), min_size=1, max_size=80)


def _replay(path, start_equity=100_000.0):
    ts, equity = START, start_equity
    for minutes, ret in path:
        ts += dt.timedelta(minutes=minutes)
        equity *= 1.0 + ret
        yield ts, equity


@given(path=steps, limit=st.floats(0.01, 0.2))
def test_daily_loss_limit_blocks_the_rest_of_the_day(path, limit):
    gate = DailyLossLimit(limit)
    day, day_start, previous, blocked = None, None, None, False
    for ts, equity in _replay(path):
        if ts.date() != day:  # oracle: the day starts at the last equity of the previous day
            day, day_start, blocked = ts.date(), (equity if previous is None else previous), False
        blocked = blocked or 1 - equity / day_start >= limit
        previous = equity
        assert gate.update(ts, equity) == blocked
        assert entries_allowed(gate, DrawdownKillSwitch(1.0)).allowed == (not blocked)


@given(path=steps, limit=st.floats(0.01, 0.5))
def test_kill_switch_latches_at_the_drawdown_limit(path, limit):
    switch = DrawdownKillSwitch(limit)
    peak, tripped = None, False
    for ts, equity in _replay(path):
        if not tripped:
            peak = equity if peak is None else max(peak, equity)
            tripped = 1 - equity / peak >= limit
        assert switch.update(ts, equity) == tripped
        gate = entries_allowed(DailyLossLimit(1.0), switch)
        assert gate.allowed == (not tripped) and gate.flatten == tripped
    if tripped:
        assert switch.update(ts + dt.timedelta(days=30), peak * 10)  # a recovery does not clear it
        switch.reset(peak * 10)
        assert not switch.tripped and switch.peak_equity == peak * 10


def test_intraday_day_boundaries_on_real_five_minute_bars():
    bars = pd.read_csv(DATA / "intraday" / "2006-min-005.txt")
    stamps = pd.to_datetime(bars["Date"] + " " + bars["Time"])
    # an account holding 5x the index's value, so that some days lose more than 1%
    equity = 100_000 * (1 + 5 * (bars["Close"] / bars["Close"].iloc[0] - 1))
    gate, limit = DailyLossLimit(0.01), 0.01
    blocked = [gate.update(t, e) for t, e in zip(stamps, equity)]
    frame = pd.DataFrame({"day": stamps.dt.date, "equity": equity, "blocked": blocked})
    day_start = frame.groupby("day")["equity"].last().shift(1)
    start = frame["day"].map(day_start).fillna(frame["equity"].iloc[0])
    expected = (1 - frame["equity"] / start >= limit).groupby(frame["day"]).cummax()
    assert frame["blocked"].tolist() == expected.tolist()
    assert 0 < sum(blocked) < len(blocked)                           # the path does trip it, on some days
    # ... within the day: some days start open and end blocked
    assert frame.groupby("day")["blocked"].first().sum() < frame.groupby("day")["blocked"].last().sum()


def test_daily_loss_reason_and_clock():
    gate = DailyLossLimit(0.05)
    assert not gate.update("2024-01-02 10:00", 100_000)
    assert gate.update("2024-01-02 11:00", 94_000)
    assert "daily loss limit" in gate.reason and "6.00%" in gate.reason
    assert gate.update("2024-01-02 15:00", 101_000)                   # recovered: still blocked today
    assert not gate.update("2024-01-03 09:35", 99_000)                # next day: 2% below 101k
    with pytest.raises(ValueError):
        gate.update("2024-01-02 16:00", 99_000)                       # time never goes back
    with pytest.raises(ValueError):
        gate.update("2024-01-03 10:00", math.nan)


def test_states_survive_a_restart_as_json():
    gate, switch = DailyLossLimit(0.05), DrawdownKillSwitch(0.15)
    for ts, equity in [("2024-01-02 10:00", 100_000), ("2024-01-02 11:00", 80_000)]:
        gate.update(ts, equity)
        switch.update(ts, equity)
    gate2 = DailyLossLimit.from_dict(json.loads(json.dumps(gate.to_dict())))
    switch2 = DrawdownKillSwitch.from_dict(json.loads(json.dumps(switch.to_dict())))
    assert gate2.to_dict() == gate.to_dict() and switch2.to_dict() == switch.to_dict()
    assert switch2.tripped and str(switch2.tripped_at) == "2024-01-02 11:00:00"
    assert "kill switch" in entries_allowed(gate2, switch2).reason
    assert gate2.update("2024-01-02 12:00", 80_500)                  # same day: still blocked
    assert switch2.update("2024-01-03 10:00", 200_000)                # latched across the restart


def test_a_changed_drawdown_limit_clears_the_latch_on_restore():
    switch = DrawdownKillSwitch(0.15)
    switch.update("2024-01-02", 100_000)
    switch.update("2024-01-03", 84_000)
    state = switch.to_dict()
    assert DrawdownKillSwitch.from_dict(state, 0.15).tripped          # same config: still latched
    looser = DrawdownKillSwitch.from_dict(state, 0.20)
    assert not looser.tripped and looser.peak_equity == 100_000
    assert not looser.update("2024-01-04", 84_000)                    # 16% < 20%
    assert looser.update("2024-01-05", 79_000)                        # 21%: trips again
