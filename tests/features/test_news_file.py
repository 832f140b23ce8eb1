"""``data.news`` files with bad input: the repairs ``load_news`` makes (each with a warning) and the
check of the headlines' symbols against the run's universe (``engine_from_config``)."""
from __future__ import annotations

import logging

import pandas as pd
import pytest

from common.errors import DataError
from config import load_config
from features.from_config import engine_from_config
from features.sources import load_news

TZ = "America/New_York"


def _write(tmp_path, text: str):
    path = tmp_path / "news.csv"
    path.write_text(text)
    return path


def test_offsets_converted_and_naive_stamps_warned_once(tmp_path, caplog):
    path = _write(tmp_path, "timestamp,symbol,headline\n"
                            "2024-01-02T14:31:00+00:00,aapl,Apple soars\n"
                            "2024-01-02 10:00,AAPL,Apple slips\n"
                            "2024-01-02 11:00,MSFT,Microsoft slips\n")
    with caplog.at_level(logging.WARNING, logger="features"):
        news = load_news(path, TZ)
    assert list(news["timestamp"]) == [pd.Timestamp("2024-01-02 09:31"), pd.Timestamp("2024-01-02 10:00"),
                                       pd.Timestamp("2024-01-02 11:00")]
    assert list(news["symbol"]) == ["AAPL", "AAPL", "MSFT"]
    warnings = [r.getMessage() for r in caplog.records if "UTC offset" in r.getMessage()]
    assert len(warnings) == 1
    assert str(path) in warnings[0] and "2 timestamp(s)" in warnings[0] and "first at row 3" in warnings[0]
    assert "exchange time" in warnings[0]


def test_duplicates_and_empty_headlines_dropped_with_warnings(tmp_path, caplog):
    path = _write(tmp_path, "timestamp,symbol,headline\n"
                            "2024-01-02 10:00,AAPL,Apple soars\n"
                            "2024-01-02 10:00,AAPL,Apple soars\n"
                            "2024-01-02T15:00:00+00:00,AAPL,Apple soars\n"  # the same time, with its offset
                            "2024-01-02 10:00,MSFT,Apple soars\n"  # another symbol: kept
                            "2024-01-02 11:00,AAPL,  \n"
                            "2024-01-02 12:00,AAPL,\n")
    with caplog.at_level(logging.WARNING, logger="features"):
        news = load_news(path, TZ)
    assert list(zip(news["symbol"], news["headline"])) == [("AAPL", "Apple soars"), ("MSFT", "Apple soars")]
    text = caplog.text
    assert "2 duplicate row(s)" in text and "first at row 3" in text
    assert "2 row(s) with an empty headline (first at row 6) dropped" in text


def test_same_headline_of_two_articles_is_kept(tmp_path):
    path = _write(tmp_path, "timestamp,symbol,headline,summary,id\n"
                            "2024-01-02T15:00:00+00:00,AAPL,Apple soars,,1\n"
                            "2024-01-02T15:00:00+00:00,AAPL,Apple soars,,2\n"
                            "2024-01-02T15:00:00+00:00,AAPL,Apple soars,,2\n")
    assert len(load_news(path, TZ)) == 2


def test_summary_column_is_optional(tmp_path):
    path = _write(tmp_path, "timestamp,symbol,headline,summary\n2024-01-02 10:00,AAPL,Apple soars, Record sales \n")
    assert list(load_news(path, TZ)["summary"]) == ["Record sales"]
    path = _write(tmp_path, "timestamp,symbol,headline\n2024-01-02 10:00,AAPL,Apple soars\n")
    news = load_news(path, TZ)
    assert list(news.columns) == ["timestamp", "symbol", "headline", "summary", "score"]
    assert list(news["summary"]) == [""]


def _engine(path, symbols):
    return engine_from_config(load_config(overrides={"data.news": str(path)}), symbols)


def test_symbols_outside_the_universe_are_warned_about(tmp_path, caplog):
    path = _write(tmp_path, "timestamp,symbol,headline\n"
                            "2024-01-02 10:00,AAPL,Apple soars\n"
                            "2024-01-02 10:00,XOM,Exxon slips\n"
                            "2024-01-03 10:00,XOM,Exxon slips again\n"
                            "2024-01-03 10:00,GE,GE flat\n")
    with caplog.at_level(logging.WARNING, logger="features"):
        _engine(path, ["AAPL", "MSFT"])
    warning = next(r.getMessage() for r in caplog.records if "not in the run" in r.getMessage())
    assert "3 headline rows of 2 symbols" in warning and "GE (1), XOM (2)" in warning and str(path) in warning


def test_no_headline_of_the_universe_is_an_error(tmp_path, caplog):
    path = _write(tmp_path, "timestamp,symbol,headline\n2024-01-02 10:00,XOM,Exxon slips\n")
    with pytest.raises(DataError, match=r"news.csv: no headline of the run's 2 symbols \(the file has XOM\)"):
        _engine(path, ["AAPL", "MSFT"])
    path = _write(tmp_path, "timestamp,symbol,headline\n")
    with caplog.at_level(logging.WARNING, logger="features"):
        _engine(path, ["AAPL", "MSFT"])  # an empty file: a warning only (a live session with no news)
    assert "no headlines" in caplog.text
