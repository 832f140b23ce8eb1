"""A symbol whose data ends before the run's (a delisting) leaves the run: no entry at its last two
bars, and a position held then is closed at its last bar's close with exit reason ``delisted``, in a
backtest and, with the same orders, in a replay through the live path."""
import pandas as pd
import pytest

from config import load_config
from engine.backtest import backtest_cerebro, collect_records, data_ends
from engine.live import run_replay
from feeds.loader import load_universe
from strategies.base import PortfolioStrategy

pytestmark = pytest.mark.slow

LAST_XOM = pd.Timestamp("2016-06-30")


class HoldEverything(PortfolioStrategy):
    """Buys 10 shares of each symbol once it has 5 bars, and never sells."""

    @classmethod
    def required_bars(cls, cfg) -> int:
        return 5

    def decide(self, now, fresh):
        for d in fresh:
            if self.tradable(d) and d._name not in self.positions_plan:
                self.enter_long(d, 10, stop_price=None)


@pytest.fixture(scope="module")
def bars():
    universe = load_universe([f"data/sample/{s}_data.csv" for s in ("AAPL", "JPM", "XOM")], end="2016-12-30")
    universe["XOM"] = universe["XOM"].loc[:LAST_XOM]  # XOM leaves half a year before the others
    return universe


def test_data_ends_names_only_the_symbols_that_leave_early(bars):
    xom = bars["XOM"].index
    assert data_ends(bars) == {"XOM": (xom[-2].to_pydatetime(), xom[-1].to_pydatetime())}


def test_a_delisted_position_is_closed_at_its_last_bar_in_backtest_and_replay(bars, tmp_path):
    cfg = load_config()
    backtest = collect_records(backtest_cerebro(cfg, bars, strategy_cls=HoldEverything).run()[0])
    trades = backtest.trades.set_index("symbol")
    assert trades.loc["XOM", "exit_reason"] == "delisted"
    assert pd.Timestamp(trades.loc["XOM", "exit_datetime"]) == LAST_XOM
    slippage = cfg.costs.slippage_bps / 1e4  # at the close, at most (Backtrader's rule for a close order)
    assert abs(trades.loc["XOM", "exit_price"] / bars["XOM"]["close"].iloc[-1] - 1) <= slippage + 1e-12
    assert set(trades.loc[["AAPL", "JPM"], "exit_reason"]) == {"end"}
    assert (backtest.orders["symbol"] == "XOM").sum() == 2  # one entry, one exit: no re-entry at the end

    replay = run_replay(cfg, bars, strategy_cls=HoldEverything, journal_dir=tmp_path).records
    pd.testing.assert_frame_equal(replay.orders, backtest.orders)
    pd.testing.assert_frame_equal(replay.trades, backtest.trades)
