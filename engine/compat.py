"""Backtrader 1.9.78.123 compatibility fixes for current Python, numpy and matplotlib.

Import backtrader through this module (``from engine.compat import bt``) so the
fixes are in place before backtrader's own modules run. Three known problems:

1. ``LineIterator.bindlines`` uses ``collections.Iterable`` and friends, removed
   in Python 3.10: alias them from ``collections.abc`` before importing backtrader.
2. ``import backtrader.plot`` calls ``matplotlib.use('TKAgg')``, which fails
   without a display: select the Agg backend right after that import
   (setting MPLBACKEND beforehand does not help).
3. Backtrader's plotter hides every x-axis label and re-shows them through
   ``get_xticklabels()``, which on matplotlib 3.6+ returns only the visible
   ones, so charts lose their dates: :class:`HeadlessPlot` turns the bottom
   axis' labels back on, and :func:`save_chart` saves with ``bbox_inches="tight"``.
"""
from __future__ import annotations

import collections
import collections.abc

for _name in ("Iterable", "Mapping", "MutableMapping", "Sequence", "Callable"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))

import backtrader as bt  # noqa: E402
import backtrader.plot  # noqa: E402,F401  (selects TKAgg as a side effect)
import matplotlib  # noqa: E402

matplotlib.use("Agg", force=True)


class HeadlessPlot(bt.plot.Plot):
    """Backtrader's plotter with the bottom x-axis date labels restored."""

    def plot(self, strategy, figid=0, numfigs=1, iplot=False, start=None, end=None, **kwargs):
        figs = super().plot(strategy, figid=figid, numfigs=numfigs, iplot=False,
                            start=start, end=end, **kwargs) or []
        for fig in figs:
            axes = [ax for ax in fig.axes if ax.get_visible()]
            if axes:
                bottom = min(axes, key=lambda ax: ax.get_position().y0)
                bottom.tick_params(axis="x", labelbottom=True)
        return figs


def save_chart(cerebro: "bt.Cerebro", path, *, dpi: int = 90, width: float = 16.0,
               height_per_panel: float = 2.2, style: str = "candle") -> list[str]:
    """Render Backtrader's own chart of every strategy in ``cerebro`` to PNG files.

    Returns the paths written (one per strategy and figure).
    """
    import matplotlib.pyplot as plt

    written: list[str] = []
    intraday = any(d._timeframe < bt.TimeFrame.Days for d in cerebro.datas)
    ticks = "%Y-%m-%d %H:%M" if intraday else "%Y-%m-%d"
    plotter = HeadlessPlot(style=style, volume=False, fmt_x_ticks=ticks, fmt_x_data=ticks)
    figures = cerebro.plot(plotter=plotter, iplot=False)
    for s_idx, figs in enumerate(figures):
        for f_idx, fig in enumerate(figs):
            panels = max(1, len([ax for ax in fig.axes if ax.get_visible()]))
            fig.set_size_inches(width, max(6.0, height_per_panel * panels))
            out = str(path)
            if len(figures) > 1 or len(figs) > 1:
                stem, dot, ext = out.rpartition(".")
                out = f"{stem}_{s_idx}_{f_idx}.{ext}"
            fig.savefig(out, dpi=dpi, bbox_inches="tight")
            plt.close(fig)
            written.append(out)
    return written


__all__ = ["bt", "HeadlessPlot", "save_chart"]
