"""The report's news figures: headlines per symbol over the run's bars, and the sentiment features'
importance block."""
from pathlib import Path
from types import SimpleNamespace

from engine.backtest import news_counts
from features.sources import NewsBook, load_news
from reports.model_report import news_block, sentiment_block

NEWS = Path(__file__).resolve().parents[1] / "features" / "data" / "news.csv"


def test_headlines_are_counted_per_symbol_within_the_runs_days():
    news = load_news(NEWS, "America/New_York")
    symbols = sorted(set(news["symbol"])) + ["ZZZZ"]
    engine = SimpleNamespace(symbols=symbols, news=NewsBook(news, symbols, 0.05))
    start, end = news["timestamp"].min().normalize(), news["timestamp"].max().normalize()
    counts = news_counts(SimpleNamespace(features=SimpleNamespace(engine=engine)),
                         {"start": str(start), "end": str(end)})
    assert counts["headlines"] == {**news.groupby("symbol").size().to_dict(), "ZZZZ": 0}
    assert counts["total"] == len(news) and counts["symbols_without"] == ["ZZZZ"]
    later = news_counts(SimpleNamespace(features=SimpleNamespace(engine=engine)),
                        {"start": str(end), "end": str(end)})
    assert later["total"] == int((news["timestamp"].dt.normalize() == end).sum())
    assert news_counts(SimpleNamespace(), {"start": str(start), "end": str(end)}) is None  # no features: no news
    html = news_block(counts)
    assert "ZZZZ" in html and "had none" in html and f"{len(news)} headlines" in html


def test_the_sentiment_block_lists_each_feature_with_its_rank():
    block = sentiment_block({"features": {"sent_5": {"importance": 0.01, "rank": 40},
                                          "news_count_1": {"importance": 0.03, "rank": 7}}, "of": 238})
    assert block.index("news_count_1") < block.index("sent_5") and "7 of 238" in block and "40 of 238" in block
