"""News and macro inputs: a value counts only from the first bar that closes after it is known."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from common.errors import DataError
from features import FeatureEngine, build_registry
from features.sources import MacroSeries, close_times, load_macro, load_news
from tests.features.helpers import DATA, TIMEZONE

CLOSE = dt.time(16, 0)


def test_daily_bar_closes_at_the_configured_time_intraday_at_its_stamp():
    stamps = pd.DatetimeIndex(["2016-03-01", "2016-03-01 10:05"])
    assert list(pd.to_datetime(close_times(stamps, CLOSE))) == [pd.Timestamp("2016-03-01 16:00"),
                                                               pd.Timestamp("2016-03-01 10:05")]


def test_macro_value_known_same_day_on_daily_bars_next_session_intraday():
    series = MacroSeries(pd.Series([10.0, 20.0], index=pd.DatetimeIndex(["2016-03-01", "2016-03-02"])), CLOSE)
    daily = close_times(pd.DatetimeIndex(["2016-03-01", "2016-03-02"]), CLOSE)
    intraday = close_times(pd.DatetimeIndex(["2016-03-02 09:35", "2016-03-02 16:00", "2016-03-03 09:35"]), CLOSE)
    assert list(series.asof(daily)) == [10.0, 20.0]
    assert list(series.asof(intraday)) == [10.0, 20.0, 20.0]
    assert np.isnan(series.asof(close_times(pd.DatetimeIndex(["2016-02-29"]), CLOSE))[0])


def test_news_fixture_is_scored_and_converted_to_exchange_time(news):
    assert len(news) == 41 and news["score"].between(-1, 1).all()
    offset = news[news["headline"].str.startswith("Exxon Mobil faces lawsuit")]
    assert offset["timestamp"].iloc[0] == pd.Timestamp("2013-02-15 14:00")  # -05:00 is New York in winter
    assert news.loc[news["headline"].str.contains("record holiday quarter"), "score"].iloc[0] > 0.05
    assert news.loc[news["headline"].str.contains("plunge"), "score"].iloc[0] < -0.05


def test_headline_counts_from_the_first_bar_closing_after_it(sample_bars, news):
    """AAPL 2014-01-28 16:45 (after the close) counts on the 29th; a Sunday headline on Monday."""
    registry = build_registry(has_news=True, has_sectors=False).subset(["news_count_1"])
    extra = pd.DataFrame({"timestamp": pd.to_datetime(["2014-03-02 12:00"]), "symbol": ["AAPL"],
                          "headline": ["weekend"], "score": [0.0]})
    frames = {"AAPL": sample_bars["AAPL"]}
    panel = FeatureEngine(registry, ["AAPL"], news=pd.concat([news, extra])).batch(frames)
    count = pd.Series(panel.values[:, 0, 0], index=panel.times)
    assert count["2014-01-28"] == 0 and count["2014-01-29"] == 1
    assert count["2014-02-28"] == 0 and count["2014-03-03"] == 1  # Sunday's headline on Monday


def test_without_news_there_are_no_sentiment_features_and_no_error(sample_bars):
    registry = build_registry(has_sectors=False)
    panel = FeatureEngine(registry, ["AAPL"]).batch({"AAPL": sample_bars["AAPL"]})
    assert not [n for n in panel.names if n.startswith(("sent", "news", "mkt_sent"))]


def test_engine_refuses_a_context_it_was_not_given():
    with pytest.raises(ValueError, match="news"):
        FeatureEngine(build_registry(has_news=True, has_sectors=False), ["AAPL"])
    with pytest.raises(ValueError, match="sector"):
        FeatureEngine(build_registry(has_sectors=True), ["AAPL"])
    with pytest.raises(ValueError, match="vix"):
        FeatureEngine(build_registry(has_macro=["vix"], has_sectors=False), ["AAPL"], macro={})


def test_bad_news_file_names_file_and_row(tmp_path):
    path = tmp_path / "news.csv"
    path.write_text("timestamp,symbol,headline\n2016-01-04 10:00,AAPL,ok\nyesterday,AAPL,bad\n")
    with pytest.raises(DataError, match=r"news.csv, row 3: unparseable timestamp 'yesterday'"):
        load_news(path, TIMEZONE)
    path.write_text("time,ticker\n")
    with pytest.raises(DataError, match="missing column"):
        load_news(path, TIMEZONE)
    with pytest.raises(DataError, match="no such file"):
        load_news(tmp_path / "absent.csv", TIMEZONE)


def test_macro_file_with_fred_gaps(tmp_path):
    path = tmp_path / "DGS10.csv"
    path.write_text("DATE,DGS10\n2016-01-04,2.24\n2016-01-05,.\n2016-01-06,2.18\n")
    series = load_macro([path])["dgs10"]
    assert series.iloc[0] == 2.24 and np.isnan(series.iloc[1])
    assert MacroSeries(series, CLOSE).asof(close_times(pd.DatetimeIndex(["2016-01-05"]), CLOSE))[0] == 2.24


def test_news_fixture_file_exists():
    assert (DATA / "news.csv").read_text().startswith("timestamp,symbol,headline")
