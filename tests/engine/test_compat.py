"""The three Backtrader fixes: collections aliases, headless Agg plotting, dated x-axis labels."""
import collections

import matplotlib
import pytest

from config import load_config
from engine.backtest import run_backtest
from engine.compat import HeadlessPlot, bt
from feeds.loader import load_universe


def test_collections_aliases_and_agg_backend():
    assert collections.Iterable is collections.abc.Iterable
    assert matplotlib.get_backend().lower() == "agg"


@pytest.mark.slow
def test_chart_keeps_its_dated_x_axis_labels(tmp_path):
    import matplotlib.pyplot as plt

    bars = load_universe(["data/sample/AAPL_data.csv"])
    result = run_backtest(load_config(overrides={"backtest.progress": False, "backtest.strategy": "momentum_breakout"}), bars)
    ticks = "%Y-%m-%d"
    figs = result.cerebro.plot(plotter=HeadlessPlot(style="candle", volume=False, fmt_x_ticks=ticks), iplot=False)[0]
    fig = figs[0]
    fig.canvas.draw()
    labels = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()
              if t.get_visible() and t.get_text() and ax.xaxis.get_tick_params()["labelbottom"]]
    assert any(label.startswith(("2013", "2014", "2015", "2016", "2017", "2018")) for label in labels), labels
    plt.close(fig)
    assert isinstance(bt.Cerebro(), bt.Cerebro)
