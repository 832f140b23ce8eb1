"""An operator's controls (``ops.controls``) reach a session at its next bar: the live path on recorded
bars (``run_replay``: live feeds, live broker, journal), with the commands written into the journal by
another connection while the session runs, as ``run.py dashboard`` writes them."""
import datetime as dt

import pytest

from brokers.journal import Journal
from config import load_config
from engine.live import run_replay
from feeds.loader import load_bars
from ops.controls import PAUSE_META
from ops.observer import Observers, SessionObserver
from ops.status import JournalStatus
from strategies.momentum_breakout import MomentumBreakout
from tests.live.gated import GatedBreakout

SAMPLE = ["data/sample/AAPL_data.csv", "data/sample/JPM_data.csv", "data/sample/XOM_data.csv"]
OVERRIDES = {"backtest.progress": False, "momentum_breakout.breakout_bars": 3, "momentum_breakout.momentum_bars": 2,
             "momentum_breakout.trend_bars": 3, "momentum_breakout.max_hold_bars": 4,
             "momentum_breakout.position_weight": 0.2, "risk.max_position_weight": 0.3}
BARS = 220


def _bars():
    return {symbol: frame.iloc[:BARS] for symbol, frame in map(load_bars, SAMPLE)}


def _bar_of(client_order_id: str) -> dt.datetime:
    """The bar an order was placed at, from its deterministic client id (SYMBOL-YYYYmmddHHMMSS-reason)."""
    return dt.datetime.strptime(client_order_id.split("-")[1], "%Y%m%d%H%M%S")


class Operator(SessionObserver):
    """Writes controls into the journal through a connection of its own, reacting to what the session
    did at the bar just decided: a flatten of a held symbol and one of an unheld symbol, then a pause
    while a position is held, a resume 25 bars later."""

    def __init__(self, url: str):
        self.journal = Journal(url)
        self.bars: list[dt.datetime] = []
        self.asked: dict[str, tuple[int, dt.datetime]] = {}  # what -> (control id, bar at which it was asked)
        self.flattened = self.unheld = None

    def held(self, bar: dt.datetime) -> list[str]:
        """The symbols held after ``bar`` with no exit placed at it (still held at the next bar)."""
        exiting = {o.symbol for o in self.journal.orders() if o.side == "sell" and o.parent_client_order_id is None
                   and _bar_of(o.client_order_id) == bar}
        return sorted({row["symbol"] for row in self.journal.table("positions")
                       if row["bar_datetime"] == bar and row["qty"] > 0} - exiting)

    def ask(self, what: str, action: str, bar: dt.datetime, symbol: str | None = None) -> None:
        self.asked[what] = (self.journal.request_control(action, who="tester", symbol=symbol), bar)

    def bar_decided(self, snapshot):
        bar = snapshot.bar_datetime
        self.bars.append(bar)
        n = len(self.bars)
        if n < 20:
            return
        if "flatten" not in self.asked:
            held = self.held(bar)
            if held:
                self.flattened = held[0]
                self.unheld = next(s for s in ("AAPL", "JPM", "XOM") if s not in held)
                self.ask("flatten", "flatten", bar, self.flattened)
                self.ask("flatten_unheld", "flatten", bar, self.unheld)
                self.ask("flatten_untraded", "flatten", bar, "MSFT")
            return
        if "pause" not in self.asked and self.bars.index(bar) > self.bars.index(self.asked["flatten"][1]) + 5 \
                and self.held(bar):
            self.ask("pause", "pause", bar)
            self.ask("pause_again", "pause", bar)
            return
        if "pause" in self.asked and "resume" not in self.asked \
                and self.bars.index(bar) >= self.bars.index(self.asked["pause"][1]) + 25:
            self.ask("resume", "resume", bar)
            self.ask("reset", "reset_kill_switch", bar)


class RawBuyWhilePaused(MomentumBreakout):
    """The baseline, plus one buy placed around ``enter_long`` while paused: the broker refuses it."""

    def __init__(self):
        super().__init__()
        self.raw_refusals = []
        self._raw_sent = False

    def decide(self, now, fresh):
        if self.broker.entries_paused and not self._raw_sent:
            self._raw_sent = True
            d = self.datas[0]
            self._tag(self.buy(data=d, size=1, exectype=self._entry_exectype), d._name, "raw")
        super().decide(now, fresh)

    def notify_order(self, order):
        if order.info.get("reason") == "raw" and order.status == order.Rejected:
            self.raw_refusals.append(order.info.get("client_order_id"))
        super().notify_order(order)


def test_controls_apply_at_the_next_bar_and_are_journaled(tmp_path, journal_url):
    cfg = load_config(overrides=OVERRIDES)
    operator = Operator(journal_url)
    status = JournalStatus(Journal(journal_url), every_seconds=0.05)
    try:
        result = run_replay(cfg, _bars(), strategy_cls=RawBuyWhilePaused, journal_url=journal_url,
                            observers=Observers(operator, status))
    finally:
        status.close()
    journal = operator.journal
    try:
        controls = {c["id"]: c for c in journal.controls()}
        events = journal.events("control")
        orders = journal.orders()
        meta = journal.get_meta(PAUSE_META)
        published = journal.session_status()
        last_equity = max(journal.table("equity"), key=lambda row: row["id"])
    finally:
        journal.close()
    bars = operator.bars
    following = {bar: bars[i + 1] for i, bar in enumerate(bars[:-1])}

    def resolved(what: str) -> dict:
        control_id, asked_at = operator.asked[what]
        control = controls[control_id]
        assert control["bar_datetime"] == following[asked_at], f"{what}: resolved at the next bar"
        assert control["resolved_at"] is not None and control["who"] == "tester"
        return control

    assert set(operator.asked) == {"flatten", "flatten_unheld", "flatten_untraded", "pause", "pause_again", "resume",
                                   "reset"}
    assert all(c["status"] != "pending" for c in controls.values())
    assert len(events) == len(controls) == 7
    assert all("by tester" in e["message"] for e in events)

    # flatten: the held symbol sold at the next bar, exit reason manual; an unheld or untraded one refused
    flatten = resolved("flatten")
    assert flatten["status"] == "applied" and "does not pause" in flatten["message"]
    flat_bar = flatten["bar_datetime"]
    manual = [o for o in orders if o.client_order_id.endswith("-manual")]
    assert [(o.symbol, o.side, _bar_of(o.client_order_id)) for o in manual] == [(operator.flattened, "sell", flat_bar)]
    trades = result.records.trades
    assert list(trades.loc[trades["exit_reason"] == "manual", "symbol"]) == [operator.flattened]
    unheld = resolved("flatten_unheld")
    assert unheld["status"] == "refused" and unheld["message"] == f"no position in {operator.unheld}"
    untraded = resolved("flatten_untraded")
    assert untraded["status"] == "refused" and "MSFT is not traded" in untraded["message"]

    # pause: no entry from the bar it is applied at until the resume's bar; exits still go
    pause, resume = resolved("pause"), resolved("resume")
    assert pause["status"] == "applied" and resume["status"] == "applied"
    again = resolved("pause_again")
    assert again["status"] == "refused" and "already entries paused by tester" in again["message"]
    paused_from, paused_to = pause["bar_datetime"], resume["bar_datetime"]
    entries = [o for o in orders if o.parent_client_order_id is None and o.side == "buy"
               and not o.client_order_id.endswith("-raw")]
    assert not [o for o in entries if paused_from <= _bar_of(o.client_order_id) < paused_to]
    assert [o for o in entries if _bar_of(o.client_order_id) < paused_from]
    assert [o for o in entries if _bar_of(o.client_order_id) >= paused_to], "entries come back after the resume"
    exits = [o for o in orders if o.parent_client_order_id is None and o.side == "sell"
             and paused_from <= _bar_of(o.client_order_id) < paused_to]
    assert exits, "exits still go while paused"
    # an entry placed around enter_long while paused: journaled, refused by the broker, the strategy told
    raw = [o for o in orders if o.client_order_id.endswith("-raw")]
    assert len(raw) == 1 and raw[0].status == "rejected" and "entries paused by tester" in raw[0].status_reason
    assert meta is None, "the resume cleared the saved pause"

    # a strategy without a kill switch refuses its reset, saying why
    reset = resolved("reset")
    assert reset["status"] == "refused" and "has no kill switch" in reset["message"]

    # the status of the session: its last bar, ended
    (row,) = published
    final = row["status"]
    assert final["state"] == "ended" and final["bar_datetime"] == bars[-1].isoformat()
    assert final["equity"] == pytest.approx(last_equity["equity"])
    assert final["cash"] == pytest.approx(last_equity["cash"])
    assert final["symbols"] == ["AAPL", "JPM", "XOM"] and final["session"] == row["session"]
    assert final["paused"] is False and final["entries_paused"] is None
    assert status.publisher_threads == {"status-publisher"}


def test_a_pause_survives_a_restart(tmp_path, journal_url):
    """A pause is kept in the journal's meta: the next session starts paused, no entry goes out."""
    cfg = load_config(overrides=OVERRIDES)
    journal = Journal(journal_url)
    try:
        journal.request_control("pause", who="tester")
        first = run_replay(cfg, {s: f.iloc[:40] for s, f in _bars().items()}, strategy_cls=MomentumBreakout,
                           journal_url=journal_url)
        assert journal.get_meta(PAUSE_META)["who"] == "tester"
        (control,) = journal.controls()
        assert control["status"] == "applied"
        second = run_replay(cfg, _bars(), strategy_cls=MomentumBreakout, journal_url=journal_url)
        buys = [o for o in journal.orders() if o.side == "buy"]
    finally:
        journal.close()
    assert not buys and len(first.records.orders) == len(second.records.orders) == 0


class Resetter(SessionObserver):
    """Asks for two kill switch resets three bars after the switch tripped (the second is refused);
    reads the state saved after the bar the reset was applied at."""

    def __init__(self, url: str, name: str):
        self.journal, self.name = Journal(url), name
        self.bars, self.tripped_at, self.asked, self.saved_after_reset = [], None, None, None

    def bar_decided(self, snapshot):
        self.bars.append(snapshot.bar_datetime)
        tripped = snapshot.risk_figures["kill_switch"]["tripped"]
        if tripped and self.tripped_at is None:
            self.tripped_at = len(self.bars) - 1
        if self.tripped_at is not None and self.asked is None and len(self.bars) - 1 == self.tripped_at + 3:
            assert tripped
            self.asked = (self.journal.request_control("reset_kill_switch", who="tester"),
                          self.journal.request_control("reset_kill_switch", who="tester"), snapshot.bar_datetime)
        elif self.asked is not None and self.saved_after_reset is None:
            self.saved_after_reset = (snapshot.bar_datetime, self.journal.load_state(self.name))


def test_a_kill_switch_reset_allows_entries_from_the_next_bar(tmp_path, journal_url):
    cfg = load_config(overrides={**OVERRIDES, "risk.max_drawdown": 0.01})
    resetter = Resetter(journal_url, f"replay-{cfg.backtest.strategy}")
    run_replay(cfg, _bars(), strategy_cls=GatedBreakout, journal_url=journal_url, observers=Observers(resetter))
    journal = resetter.journal
    try:
        first, second = (next(c for c in journal.controls() if c["id"] == i) for i in resetter.asked[:2])
        orders = journal.orders()
        events = journal.events("control")
    finally:
        journal.close()
    bars = resetter.bars
    reset_bar = bars[bars.index(resetter.asked[2]) + 1]
    assert first["status"] == "applied" and first["bar_datetime"] == reset_bar
    assert "kill switch reset" in first["message"] and "entries allowed from this bar" in first["message"]
    assert second["status"] == "refused" and "not tripped" in second["message"]
    assert len(events) == 2 and "reset_kill_switch by tester: applied" in events[0]["message"]
    entries = sorted(_bar_of(o.client_order_id) for o in orders if o.side == "buy" and o.parent_client_order_id is None)
    tripped_bar = bars[resetter.tripped_at]
    assert not [b for b in entries if tripped_bar < b < reset_bar], "no entry while tripped"
    assert [b for b in entries if b >= reset_bar], "entries again once reset"
    # the state saved after the reset's bar carries it: a restart would not trip again from the old latch
    saved_bar, (state_bar, state) = resetter.saved_after_reset[0], resetter.saved_after_reset[1]
    assert state_bar == saved_bar == reset_bar
    assert state["strategy"]["risk"]["kill_switch"]["tripped"] is False and state["strategy"]["halted"] is None
