"""A strategy for the live news tests: ``momentum_breakout``'s orders, and the sentiment features
(``data.news`` configured) read at every bar and kept per
instance in :attr:`NewsProbe.sessions` (live and replay alike), without training anything."""
from __future__ import annotations

import numpy as np

from features.engine import FeatureEngine
from features.registry import build_registry
from features.sources import load_news
from indicators.feature_hub import FeatureHub
from strategies.momentum_breakout import MomentumBreakout


class NewsProbe(MomentumBreakout):
    sessions: list["NewsProbe"] = []  # every instance, in order: its ``seen`` {bar datetime: (N, F) rows}

    def __init__(self):
        super().__init__()
        registry = build_registry(has_news=bool(self.cfg.data.news), has_sectors=False, config=self.cfg.features)
        registry = registry.subset([n for n, g in registry.groups.items() if g == "sentiment"])
        symbols = [d._name for d in self.datas]
        news = load_news(self.cfg.data.news, self.cfg.features.exchange_timezone)
        self.features = FeatureHub(self, FeatureEngine(registry, symbols, news=news, config=self.cfg.features))
        self.seen: dict = {}
        type(self).sessions.append(self)

    def _record(self):
        self.seen[self.datetime.datetime(0)] = np.array(self.features.rows(), copy=True)

    def next(self):  # also the base's prenext's
        self._record()
        super().next()

    def value(self, when, symbol: str, name: str = "news_count_1") -> float:
        return float(self.seen[when][self.features.engine.symbols.index(symbol), self.features.names.index(name)])
