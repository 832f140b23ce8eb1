"""ops.controls: which controls are refused before they are tried, the pause kept in the journal, and
the ML plans' kill switch reset (``RiskGatedPlan.reset_kill_switch``)."""
import datetime as dt
from types import SimpleNamespace

import pytest

from brokers.journal import Journal, sqlite_url
from brokers.live.halts import EntryHalts
from config import load_config
from ops.controls import ACTIONS, PAUSE_META, ControlDesk, ControlRefused, validate
from risk.manager import RiskManager
from strategies.ml import RiskGatedPlan

SYMBOLS = ["AAPL", "JPM"]
BAR = dt.datetime(2024, 3, 1, 15, 30)


def test_actions_are_the_journals():
    assert ACTIONS == ("pause", "resume", "reset_kill_switch", "flatten")


@pytest.mark.parametrize("action, symbol, refusal", [
    ("pause", None, None), ("resume", None, None), ("reset_kill_switch", None, None), ("flatten", None, None),
    ("flatten", "AAPL", None),
    ("flatten", "MSFT", "MSFT is not traded by this session (AAPL, JPM)"),
    ("halt", None, "unknown action 'halt': one of pause, resume, reset_kill_switch, flatten"),
    ("pause", "AAPL", "pause takes no symbol (got AAPL)"),
])
def test_validation(action, symbol, refusal):
    assert validate(action, symbol, SYMBOLS) == refusal


class Strategy:
    """What the desk asks of a strategy, recorded."""

    def __init__(self):
        self.broker = SimpleNamespace(getvalue=lambda: 1234.5)
        self.calls = []

    def reset_kill_switch(self, equity):
        self.calls.append(("reset", equity))
        raise ControlRefused("no kill switch here")

    def flatten(self, symbol=None):
        self.calls.append(("flatten", symbol))
        return f"sold {symbol}"

    def boom(self):
        raise RuntimeError("a bug")


@pytest.fixture
def journal(tmp_path):
    journal = Journal(sqlite_url(tmp_path / "journal.sqlite"))
    yield journal
    journal.close()


def test_the_desk_applies_each_pending_control_once_and_keeps_the_pause(journal):
    halts = EntryHalts(journal)
    desk = ControlDesk(journal, halts, SYMBOLS)
    assert desk.paused is None and halts.paused is None
    strategy = Strategy()
    assert desk.apply(strategy, BAR) == 0
    ids = [journal.request_control(action, who="ops", symbol=symbol) for action, symbol in
           [("pause", None), ("flatten", "JPM"), ("reset_kill_switch", None), ("flatten", "MSFT"), ("bogus", None)]]
    assert desk.apply(strategy, BAR) == 5
    assert desk.apply(strategy, BAR) == 0, "resolved: never applied twice"
    rows = {c["id"]: c for c in journal.controls()}
    assert [rows[i]["status"] for i in ids] == ["applied", "applied", "refused", "refused", "refused"]
    assert all(rows[i]["bar_datetime"] == BAR for i in ids)
    assert rows[ids[1]]["message"] == "sold JPM" and rows[ids[2]]["message"] == "no kill switch here"
    assert strategy.calls == [("flatten", "JPM"), ("reset", 1234.5)]
    assert "entries paused by ops" in halts.paused and journal.get_meta(PAUSE_META)["who"] == "ops"
    assert [e["message"].split(":")[0] for e in journal.events("control")] == [
        f"#{ids[0]} pause by ops", f"#{ids[1]} flatten JPM by ops", f"#{ids[2]} reset_kill_switch by ops",
        f"#{ids[3]} flatten MSFT by ops", f"#{ids[4]} bogus by ops"]

    # a new session (a restart) starts paused
    restarted = EntryHalts(journal)
    assert ControlDesk(journal, restarted, SYMBOLS).paused["control_id"] == ids[0]
    assert restarted.paused == halts.paused and restarted.reason() is None, "a pause is no halt of the book"
    resume = journal.request_control("resume", who="ops")
    again = journal.request_control("resume", who="ops")
    desk.apply(strategy, BAR)
    rows = {c["id"]: c for c in journal.controls()}
    assert rows[resume]["status"] == "applied" and rows[again]["message"] == "entries are not paused"
    assert halts.paused is None and journal.get_meta(PAUSE_META) is None
    assert ControlDesk(journal, EntryHalts(journal), SYMBOLS).paused is None


def test_a_control_that_fails_is_refused_and_the_session_goes_on(journal, caplog):
    strategy = Strategy()
    strategy.flatten = lambda symbol=None: strategy.boom()
    desk = ControlDesk(journal, EntryHalts(journal), SYMBOLS)
    control = journal.request_control("flatten", who="ops")
    desk.apply(strategy, BAR)
    (row,) = journal.controls()
    assert row["id"] == control and row["status"] == "refused" and row["message"] == "failed: RuntimeError: a bug"


def _plan(max_drawdown=0.1):
    """A RiskGatedPlan's kill switch state without its models (the reset reads no more)."""
    cfg = load_config(overrides={"risk.max_drawdown": max_drawdown})
    plan = SimpleNamespace(risk=RiskManager(cfg.risk), halted=None, now=BAR, decision_lines=[], bar_risk_components=[])
    plan._decision = lambda now, symbol, text: RiskGatedPlan._decision(plan, now, symbol, text)
    return plan


def test_the_ml_plans_reset_a_tripped_kill_switch_at_the_equity_now():
    plan = _plan()
    plan.risk.update_equity(BAR - dt.timedelta(days=2), 100_000.0)
    gate = plan.risk.update_equity(BAR - dt.timedelta(days=1), 85_000.0)
    assert gate.flatten
    plan.halted = {"datetime": str(BAR), "reason": gate.reason}
    message = RiskGatedPlan.reset_kill_switch(plan, 86_000.0)
    assert message.startswith("kill switch reset: its peak restarts at equity 86,000.00")
    switch = plan.risk.kill_switch
    assert not switch.tripped and switch.peak_equity == 86_000.0 and plan.halted is None
    assert "KILL SWITCH RESET" in plan.decision_lines[-1]
    assert plan.risk.update_equity(BAR, 86_000.0).allowed, "entries allowed at the bar of the reset"
    assert plan.risk.to_dict()["kill_switch"]["tripped"] is False, "the saved state carries the reset"
    figures = RiskGatedPlan.risk_figures(plan)
    assert figures["kill_switch"]["peak_equity"] == 86_000.0 and figures["kill_switch"]["drawdown"] == 0.0
    assert figures["daily_loss"]["day_start_equity"] == 85_000.0

    with pytest.raises(ControlRefused, match=r"not tripped \(drawdown 0.00%, limit 10.00%\)"):
        RiskGatedPlan.reset_kill_switch(plan, 86_000.0)
