"""CSV loading: every accepted format on real files, every bad input refused with file, row and problem."""
import datetime as dt
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from common.errors import DataError
from feeds.loader import (BAR_COLUMNS, DROP_HINT, DataQuality, infer_bar_interval, load_bars, load_sector_map,
                          load_universe)

HEADER = "Date,Open,High,Low,Close,Volume"
ROWS = ["2020-01-02,10,11,9,10.5,100", "2020-01-03,10.5,12,10,11,200", "2020-01-06,11,11.5,10.5,11.2,150"]


def write(tmp_path, text, name="XYZ.csv"):
    path = tmp_path / name
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def csv_text(*rows, header=HEADER):
    return "\n".join([header, *rows]) + "\n"


def with_row(index, row):
    """ROWS with ROWS[index] replaced (index 0 is file row 2)."""
    return [row if at == index else original for at, original in enumerate(ROWS)]


def assert_bars_shape(bars):
    assert list(bars.columns) == list(BAR_COLUMNS)
    assert (bars.dtypes == np.float64).all()
    assert isinstance(bars.index, pd.DatetimeIndex) and bars.index.name == "datetime"
    assert bars.index.tz is None and bars.index.is_monotonic_increasing and bars.index.is_unique


# ---- formats on real files -------------------------------------------------------------------

def test_kaggle_sample_file_golden_first_and_last_rows():
    symbol, bars = load_bars("data/sample/AAPL_data.csv")
    assert symbol == "AAPL" and len(bars) == 1259
    assert_bars_shape(bars)
    assert bars.index[0] == pd.Timestamp("2013-02-08") and bars.index[-1] == pd.Timestamp("2018-02-07")
    assert_allclose(bars.iloc[0].to_numpy(), [67.7142, 68.4014, 66.8928, 67.8542, 158168416, 0.0])
    assert_allclose(bars.iloc[-1].to_numpy(), [163.085, 163.4, 159.0685, 159.54, 51608580, 0.0])
    assert infer_bar_interval(bars.index) == ("days", 1)


def test_yahoo_file_is_adjusted_by_adj_close():
    symbol, bars = load_bars("data/yahoo/orcl-1995-2014.txt")
    assert symbol == "ORCL" and len(bars) == 5036
    assert_bars_shape(bars)
    # raw line: 2000-03-01,36.875000,37.250000,35.375000,35.750000,31.799276,44934400
    ratio = 31.799276 / 35.75
    assert_allclose(bars.loc["2000-03-01"].to_numpy(),
                    [36.875 * ratio, 37.25 * ratio, 35.375 * ratio, 31.799276, 44934400 / ratio, 0.0])
    assert_allclose(bars.loc["2000-03-01", "close"] * bars.loc["2000-03-01", "volume"], 35.75 * 44934400)


def test_backtrader_intraday_file_combines_date_and_time():
    symbol, bars = load_bars("data/intraday/2006-min-005.txt")
    assert symbol == "2006-MIN-005" and len(bars) == 2142
    assert_bars_shape(bars)
    assert bars.index[0] == pd.Timestamp("2006-01-02 09:05:00")
    assert_allclose(bars.iloc[0].to_numpy(), [3578.73, 3587.88, 3578.73, 3582.99, 0.0, 0.0])
    assert infer_bar_interval(bars.index) == ("minutes", 5)


def sample_rows(count=5):
    return pd.read_csv("data/sample/AAPL_data.csv", nrows=count)


def test_backtrader_daily_format_written_from_sample_rows(tmp_path):
    rows = sample_rows()
    lines = [f"{r.date},{r.open},{r.high},{r.low},{r.close},{r.volume},7" for r in rows.itertuples()]
    symbol, bars = load_bars(write(tmp_path, csv_text(*lines, header="Date,Open,High,Low,Close,Volume,OpenInterest"),
                                   "aapl-2013.txt"))
    assert symbol == "AAPL"
    assert_allclose(bars[["open", "high", "low", "close", "volume"]].to_numpy(),
                    rows[["open", "high", "low", "close", "volume"]].to_numpy())
    assert (bars["openinterest"] == 7).all()
    assert list(bars.index) == list(pd.to_datetime(rows["date"]))


def test_backtrader_time_field_under_a_header_without_time(tmp_path):
    # as in Backtrader's own 2006-01-02-volume-min-001.txt
    text = csv_text("2006-01-02,09:01:00,3602.00,3603.00,3597.00,3599.00,5699,0",
                    "2006-01-02,09:02:00,3600.00,3601.00,3598.00,3599.00,894,0",
                    header="Date,Open,High,Low,Close,Volume,OpenInterest")
    _, bars = load_bars(write(tmp_path, text))
    assert list(bars.index) == [pd.Timestamp("2006-01-02 09:01"), pd.Timestamp("2006-01-02 09:02")]
    assert_allclose(bars.iloc[0].to_numpy(), [3602, 3603, 3597, 3599, 5699, 0])
    assert infer_bar_interval(bars.index) == ("minutes", 1)


def test_generic_csv_other_order_casing_delimiter_and_date_format(tmp_path):
    rows = sample_rows()
    lines = [f"{r.volume};{r.close};{r.low};{r.high};{r.open};{r.date.replace('-', '')};x"
             for r in rows.itertuples()]
    text = csv_text(*lines, header="VOL;CLOSE;LOW;High;OPEN;Time Stamp;Comment")
    _, bars = load_bars(write(tmp_path, text))
    assert_allclose(bars[["open", "high", "low", "close", "volume"]].to_numpy(),
                    rows[["open", "high", "low", "close", "volume"]].to_numpy())
    assert bars.index[0] == pd.Timestamp("2013-02-08")


def test_single_letter_aliases_and_quoted_header(tmp_path):
    text = csv_text('"2020-01-02","10","11","9","10.5"', header='"datetime","o","h","l","c"')
    _, bars = load_bars(write(tmp_path, text))
    assert_allclose(bars.iloc[0].to_numpy(), [10, 11, 9, 10.5, 0, 0])


def test_month_first_slashed_dates_and_utc_offsets(tmp_path):
    _, bars = load_bars(write(tmp_path, csv_text("02/03/2010,10,11,9,10.5,1", "2/4/2010,10,11,9,10.5,1")))
    assert list(bars.index) == [pd.Timestamp("2010-02-03"), pd.Timestamp("2010-02-04")]
    text = csv_text("2020-01-02T15:30:00-05:00,10,11,9,10.5,1", "2020-01-02T20:35:00Z,10,11,9,10.5,1",
                    header="timestamp,open,high,low,close,volume")
    _, bars = load_bars(write(tmp_path, text))
    assert bars.index.tz is None
    assert list(bars.index) == [pd.Timestamp("2020-01-02 20:30"), pd.Timestamp("2020-01-02 20:35")]


@pytest.mark.parametrize(("name", "symbol"), [
    ("AAPL_data.csv", "AAPL"), ("orcl-1995-2014.txt", "ORCL"), ("msft.csv", "MSFT"), ("nvda-2014.txt", "NVDA"),
    ("brk_b.csv", "BRK_B"),
])
def test_symbol_from_file_name(tmp_path, name, symbol):
    assert load_bars(write(tmp_path, csv_text(*ROWS), name))[0] == symbol


def test_symbol_column_wins_over_file_name(tmp_path):
    text = csv_text(*(row + ",aapl" for row in ROWS), header=HEADER + ",Name")
    assert load_bars(write(tmp_path, text, "whatever.csv"))[0] == "AAPL"


def test_no_volume_column_is_zero_with_a_warning(tmp_path, caplog):
    text = csv_text(*(row.rsplit(",", 1)[0] for row in ROWS), header="Date,Open,High,Low,Close")
    path = write(tmp_path, text)
    with caplog.at_level(logging.WARNING, logger="feeds"):
        _, bars = load_bars(path)
    assert (bars["volume"] == 0).all()
    assert f"{path}: no volume column, volume set to 0" in caplog.messages


# ---- bad input: file, row, problem -------------------------------------------------------------

BAD = {
    "empty": ("", None, "empty file"),
    "whitespace only": (" \n\n\t\n", None, "empty file"),
    "header only": (HEADER + "\n", None, "no data rows (header only)"),
    "binary": (b"PK\x03\x04\x00\x00binary", None, "not a CSV file (binary content)"),
    "not utf-8": (csv_text(ROWS[0], "2020-01-03,10.5,12,10,11,200,Soci\xe9t\xe9").encode("latin-1"), 3,
                  "not a CSV file (byte 0xe9 is not UTF-8 text)"),
    "single column": ("just some text\nmore text\n", 1, "not a CSV file (a single column: 'just some text')"),
    "missing columns": (csv_text("2020-01-02,10,10.5", header="Date,Open,Close"), 1,
                        "missing column(s): high, low (columns found: Date, Open, Close)"),
    "no date column": (csv_text("10,11,9,10.5", header="Open,High,Low,Close"), 1,
                       "missing column(s): date (columns found: Open, High, Low, Close)"),
    "ambiguous close": (csv_text("2020-01-02,10,11,9,10.5,10.5", header="Date,Open,High,Low,Close,c"), 1,
                        "ambiguous columns for close: Close, c"),
    "ambiguous date": (csv_text("2020-01-02,2020-01-02,10,11,9,10.5", header="Date,Timestamp,Open,High,Low,Close"),
                       1, "ambiguous columns for the date: Date, Timestamp"),
    "json": ('{"open": 1, "close": [1, 2]}\n', 1,
             'missing column(s): date, open, high, low, close (columns found: {"open": 1, "close": [1, 2]})'),
    "too many fields after a trailing delimiter": (csv_text(ROWS[0] + ",", ROWS[1] + ",,5"), 3,
                                                   "8 fields, the header has 7"),
    "too many fields": (csv_text(ROWS[0], ROWS[1] + ",5,6"), 3, "8 fields, the header has 6"),
    "non-numeric": (csv_text(*with_row(1, "2020-01-03,10.5,12,10,abc,200")), 3,
                    "non-numeric value 'abc' in column Close"),
    "infinite": (csv_text(*with_row(2, "2020-01-06,11,inf,10.5,11.2,150")), 4,
                 "non-numeric value 'inf' in column High"),
    "impossible date": (csv_text(*with_row(1, "2020-02-30,10.5,12,10,11,200")), 3,
                        "impossible or unparseable date '2020-02-30'"),
    "unparseable date": (csv_text(*with_row(0, "hello,10,11,9,10.5,100")), 2,
                         "impossible or unparseable date 'hello'"),
    "day-first date": (csv_text("02/01/2020,10,11,9,10.5,100", "13/01/2020,10,11,9,10.5,100"), 3,
                       "impossible or unparseable date '13/01/2020'"),
    "date out of range": (csv_text(*with_row(1, "2300-01-03,10.5,12,10,11,200")), 3,
                          "date '2300-01-03' is outside the supported range 1677-09-22 to 2262-04-11"),
    "missing date": (csv_text(*with_row(1, ",10.5,12,10,11,200")), 3, "missing date"),
    "duplicate timestamps": (csv_text(*with_row(2, "2020-01-02,11,11.5,10.5,11.2,150")), 4,
                             "duplicate timestamp 2020-01-02 (same as row 2)"),
    "zero price": (csv_text(*with_row(1, "2020-01-03,10.5,12,0,11,200")), 3, "non-positive price 0 in column Low"),
    "negative price": (csv_text(*with_row(0, "2020-01-02,-10,11,9,10.5,100")), 2,
                       "non-positive price -10 in column Open"),
    "high below low": (csv_text(*with_row(1, "2020-01-03,10.5,10,12,11,200")), 3, "high 10 is below low 12"),
    "close above high": (csv_text(*with_row(1, "2020-01-03,10.5,12,10,12.5,200")), 3,
                         "close 12.5 is outside the bar's range [low 10, high 12]"),
    "close below low": (csv_text(*with_row(1, "2020-01-03,10.5,12,10,9.5,200")), 3,
                        "close 9.5 is outside the bar's range [low 10, high 12]"),
    "open outside": (csv_text(*with_row(2, "2020-01-06,12,11.5,10.5,11.2,150")), 4,
                     "open 12 is outside the bar's range [low 10.5, high 11.5]"),
    "negative volume": (csv_text(*with_row(1, "2020-01-03,10.5,12,10,11,-200")), 3, "negative volume -200"),
    "missing price": (csv_text(*with_row(1, "2020-01-03,,12,10,11,200")), 3, "missing value in column(s) Open"),
    "missing prices": (csv_text(*with_row(1, "2020-01-03,null,12,,11,200")), 3,
                       "missing value in column(s) Open, Low"),
    "missing volume": (csv_text(*with_row(2, "2020-01-06,11,11.5,10.5,11.2,")), 4,
                       "missing value in column(s) Volume"),
    "several symbols": (csv_text(ROWS[0] + ",AAPL", ROWS[1] + ",aapl", ROWS[2] + ",MSFT", header=HEADER + ",Name"),
                        4, "several symbols in one file (AAPL and MSFT)"),
    "blank lines count as rows of the file": (csv_text(ROWS[0], "", "   ", "2020-01-03,10.5,12,10,abc,200"), 5,
                                              "non-numeric value 'abc' in column Close"),
    "earliest row wins over check order": (csv_text(*with_row(0, "2020-01-02,10,11,9,12,100"),
                                                    "2020-13-01,10,11,9,10,100"), 2,
                                           "close 12 is outside the bar's range [low 9, high 11]"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_names_file_row_and_problem(tmp_path, case):
    text, row, problem = BAD[case]
    path = write(tmp_path, text)
    with pytest.raises(DataError) as caught:
        load_bars(path)
    assert caught.value.row == row
    assert caught.value.problem == problem
    where = f"{path}, row {row}" if row is not None else str(path)
    hint = f" ({DROP_HINT})" if caught.value.hint else ""  # a bad row names the option that drops it
    assert str(caught.value) == f"{where}: {problem}{hint}"


@pytest.mark.parametrize("case", BAD)
def test_invalid_rows_drop_drops_each_bad_row_with_a_warning_and_nothing_else(tmp_path, case, caplog):
    """Every problem whose message names ``data.invalid_rows`` is a bad row that "drop" drops, with a
    warning naming the file, the row and the problem, counted by kind; every other still refuses."""
    text, row, problem = BAD[case]
    path = write(tmp_path, text)
    with pytest.raises(DataError) as caught:
        load_bars(path)
    if caught.value.hint is None:
        with pytest.raises(DataError, match=re.escape(problem)):
            load_bars(path, invalid_rows="drop")
        return
    quality = DataQuality()
    with caplog.at_level(logging.WARNING, logger="feeds"):
        symbol, bars = load_bars(path, invalid_rows="drop", quality=quality)
    assert f"{path}, row {row}: {problem}: row dropped (data.invalid_rows = drop)" in caplog.messages
    assert sum(quality.dropped_rows[symbol].values()) == len(caplog.messages) >= 1
    assert_bars_shape(bars)


def test_windows_line_endings_and_byte_order_mark_keep_row_numbers(tmp_path):
    text = csv_text(*with_row(2, "2020-01-06,11,11.5,10.5,11.2,-1")).replace("\n", "\r\n")
    with pytest.raises(DataError, match="row 4: negative volume -1"):
        load_bars(write(tmp_path, "\ufeff" + text))
    _, bars = load_bars(write(tmp_path, "\ufeff" + csv_text(*ROWS).replace("\n", "\r\n")))
    assert len(bars) == 3


def test_trailing_delimiter_on_rows_is_accepted(tmp_path):
    _, bars = load_bars(write(tmp_path, csv_text(*(row + "," for row in ROWS))))
    assert_allclose(bars["close"], [10.5, 11, 11.2])


def test_range_checks_tolerate_vendor_rounding(tmp_path):
    _, bars = load_bars(write(tmp_path, csv_text("2020-01-02,9.00000000001,11,9,11.00000000001,100")))
    assert len(bars) == 1


def test_missing_file_and_unreadable_paths(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_bars(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"nope: no such file or folder"):
        load_universe([tmp_path / "nope"])
    with pytest.raises(DataError, match="no data files given"):
        load_universe([])
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(DataError, match="no .csv or .txt file in this folder"):
        load_universe(tmp_path)


def test_missing_prices_dropped_with_a_warning_when_configured(tmp_path, caplog):
    path = write(tmp_path, csv_text(*with_row(1, "2020-01-03,,12,10,11,200"), "2020-01-07,11,12,,11.5,"))
    with pytest.raises(DataError, match="row 3: missing value"):
        load_bars(path)
    with caplog.at_level(logging.WARNING, logger="feeds"):
        _, bars = load_bars(path, drop_missing_prices=True)
    assert list(bars.index) == [pd.Timestamp("2020-01-02"), pd.Timestamp("2020-01-06")]
    assert caplog.messages == [f"{path}: dropped 2 rows with a missing price or volume (drop_missing_prices)"]


def test_dropping_missing_prices_still_refuses_other_problems(tmp_path):
    path = write(tmp_path, csv_text(*with_row(1, "2020-01-03,,12,10,11,200"), "2020-01-07,11,12,x,11.5,1"))
    with pytest.raises(DataError, match="row 5: non-numeric value 'x' in column Low"):
        load_bars(path, drop_missing_prices=True)


def test_rows_out_of_order_are_sorted_with_a_warning(tmp_path, caplog):
    path = write(tmp_path, csv_text(ROWS[2], ROWS[0], ROWS[1]))
    with caplog.at_level(logging.WARNING, logger="feeds"):
        _, bars = load_bars(path)
    _, expected = load_bars(write(tmp_path, csv_text(*ROWS), "sorted.csv"))
    pd.testing.assert_frame_equal(bars, expected)
    assert caplog.messages == [f"{path}: rows out of order (first at row 3), sorted"]


def test_duplicate_after_sorting_names_both_rows(tmp_path):
    path = write(tmp_path, csv_text(ROWS[2], ROWS[0], ROWS[1], "2020-01-06,11,11.5,10.5,11.2,150"))
    with pytest.raises(DataError, match=r"row 5: duplicate timestamp 2020-01-06 \(same as row 2\)"):
        load_bars(path)


def test_start_end_cut_is_inclusive():
    _, bars = load_bars("data/sample/AAPL_data.csv", start="2014-01-01", end=dt.date(2014, 12, 31))
    assert bars.index[0] == pd.Timestamp("2014-01-02") and bars.index[-1] == pd.Timestamp("2014-12-31")
    assert len(bars) == 252
    _, bars = load_bars("data/intraday/2006-min-005.txt", start="2006-01-03", end="2006-01-03")
    assert bars.index[0] == pd.Timestamp("2006-01-03 09:05") and bars.index[-1].date() == dt.date(2006, 1, 3)
    assert bars.index[-1].hour >= 17
    _, bars = load_bars("data/intraday/2006-min-005.txt", end=pd.Timestamp("2006-01-02 10:00"))
    assert bars.index[-1] == pd.Timestamp("2006-01-02 10:00")


def test_too_few_bars_for_the_warm_up():
    with pytest.raises(DataError) as caught:
        load_bars("data/sample/PYPL_data.csv", min_bars=700)
    assert caught.value.problem == "only 655 bars (2015-07-06 to 2018-02-07), 700 needed for the warm-up"
    with pytest.raises(DataError, match="only 2 bars between 2018-02-06 and the last bar, 3 needed for the warm-up"):
        load_bars("data/sample/PYPL_data.csv", min_bars=3, start="2018-02-06")
    with pytest.raises(DataError, match="only 0 bars between 2019-01-01 and the last bar"):
        load_bars("data/sample/PYPL_data.csv", start="2019-01-01")


# ---- universes and sectors ------------------------------------------------------------------------

def test_sample_folder_loads_28_symbols_with_their_own_calendars():
    universe = load_universe("data/sample", min_bars=200)
    assert len(universe) == 28 and list(universe) == sorted(universe)
    assert universe["PYPL"].index[0] == pd.Timestamp("2015-07-06") and len(universe["PYPL"]) == 655
    assert all(len(bars) == 1259 for symbol, bars in universe.items() if symbol != "PYPL")
    for bars in universe.values():
        assert_bars_shape(bars)


def test_files_and_folders_mix_and_a_file_named_twice_loads_once():
    universe = load_universe(["data/yahoo", "data/sample/AAPL_data.csv", "data/sample/AAPL_data.csv"])
    assert list(universe) == ["AAPL", "NVDA", "ORCL", "YHOO"]


def test_duplicate_symbol_across_files_names_both(tmp_path):
    first = write(tmp_path, csv_text(*ROWS), "msft.csv")
    second = write(tmp_path, csv_text(*(row + ",MSFT" for row in ROWS), header=HEADER + ",symbol"), "other.csv")
    with pytest.raises(DataError) as caught:
        load_universe([first, second])
    assert str(caught.value) == f"{second}: symbol MSFT is also in {first}"


def test_sector_map_covers_every_sample_symbol():
    sectors = load_sector_map("data/sectors.csv")
    assert set(load_universe("data/sample")) <= set(sectors)
    assert sectors["AAPL"] == "Information Technology" and sectors["XOM"] == "Energy"


@pytest.mark.parametrize(("text", "message"), [
    ("symbol,industry\nAAPL,Tech\n", "row 1: missing column(s): sector"),
    ("symbol,sector\n", "no data rows (header only)"),
    ("symbol,sector\nAAPL,Tech\n\nMSFT,\n", "row 4: missing sector for MSFT"),
    ("Ticker,Sector\nAAPL,Tech\naapl,Tech\n", "row 3: symbol AAPL appears twice (also row 2)"),
    ("", "empty file"),
])
def test_bad_sector_map(tmp_path, text, message):
    path = write(tmp_path, text, "sectors.csv")
    with pytest.raises(DataError) as caught:
        load_sector_map(path)
    assert str(caught.value).endswith(message) and str(caught.value).startswith(str(path))


# ---- bar interval -------------------------------------------------------------------------------

@pytest.mark.parametrize(("index", "interval"), [
    (pd.bdate_range("2020-01-01", periods=300), ("days", 1)),
    (pd.date_range("2020-01-03", periods=60, freq="W-FRI"), ("weeks", 1)),
    (pd.date_range("2020-01-31", periods=30, freq="ME"), ("months", 1)),
    (pd.date_range("2020-03-31", periods=12, freq="QE"), ("months", 3)),
    (pd.date_range("2000-12-31", periods=10, freq="YE"), ("months", 12)),
    (pd.date_range("2020-01-02 09:30", periods=7, freq="h").append(
        pd.date_range("2020-01-03 09:30", periods=7, freq="h")), ("minutes", 60)),
    (pd.date_range("2020-01-02 09:30", periods=100, freq="15s"), ("seconds", 15)),
    (pd.DatetimeIndex(["2020-01-02"]), ("days", 1)),
])
def test_infer_bar_interval(index, interval):
    assert infer_bar_interval(index) == interval


# ---- property: any valid frame round-trips ----------------------------------------------------------

prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def valid_bars(draw):
    count = draw(st.integers(min_value=1, max_value=25))
    days = draw(st.lists(st.integers(0, 20_000), min_size=count, max_size=count, unique=True))
    rows = []
    for _ in range(count):
        low, high = sorted(draw(st.lists(prices, min_size=2, max_size=2)))
        open_, close = (low + draw(st.floats(0, 1)) * (high - low) for _ in range(2))
        rows.append((min(max(open_, low), high), high, low, min(max(close, low), high),
                     draw(st.integers(0, 10**12))))
    index = pd.DatetimeIndex(pd.Timestamp("1990-01-01") + pd.to_timedelta(days, unit="D"), name="datetime")
    return pd.DataFrame(rows, index=index, columns=["open", "high", "low", "close", "volume"])


@settings(max_examples=60, deadline=None)
@given(frame=valid_bars())
def test_any_valid_frame_loads_back_equal_and_sorted(tmp_path_factory, frame):
    path = tmp_path_factory.mktemp("prop") / "PROP.csv"
    frame.to_csv(path, date_format="%Y-%m-%d")
    symbol, bars = load_bars(path)
    expected = frame.sort_index().astype(np.float64).assign(openinterest=0.0)
    assert symbol == "PROP"
    assert_bars_shape(bars)
    assert list(bars.index) == list(expected.index)
    assert_allclose(bars.to_numpy(), expected.to_numpy(), rtol=1e-15)


def test_a_file_too_short_for_the_warm_up_is_skipped_in_a_universe_and_refused_alone(tmp_path, caplog):
    folder = tmp_path / "universe"
    folder.mkdir()
    write(folder, csv_text(*ROWS), "LONG.csv")
    write(folder, csv_text(*ROWS[:2]), "NEW.csv")
    quality = DataQuality()
    with caplog.at_level(logging.WARNING, logger="feeds"):
        universe = load_universe([folder], min_bars=3, quality=quality)
    assert list(universe) == ["LONG"]
    assert quality.skipped == {"NEW": "only 2 bars (2020-01-02 to 2020-01-03), 3 needed for the warm-up"}
    assert caplog.messages == [f"{folder / 'NEW.csv'}: {quality.skipped['NEW']}: skipped"]
    with pytest.raises(DataError, match="only 2 bars"):
        load_universe([folder / "NEW.csv"], min_bars=3)
    with pytest.raises(DataError, match="none of the 2 files has the 4 bars the warm-up needs"):
        load_universe([folder], min_bars=4)


SP500 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sp500_5yr"


@pytest.mark.slow
@pytest.mark.skipif(not SP500.is_dir(), reason="../shared/data/sp500_5yr is not beside the project")
def test_the_505_stock_universe_loads_with_its_bad_rows_dropped_and_its_recent_listing_skipped(caplog):
    with pytest.raises(DataError, match=r"AOS_data.csv, row 322: high 23.595 is below low 23.85 \(data.invalid_rows"):
        load_universe([SP500])
    quality = DataQuality()
    with caplog.at_level(logging.WARNING, logger="feeds"):
        universe = load_universe([SP500], invalid_rows="drop", min_bars=61, quality=quality)
    assert len(universe) == 504 and sum(len(f) for f in universe.values()) == 618_973
    assert sorted(quality.dropped_rows) == ["AOS", "BBY", "BHF", "CHD", "CHK", "DHR", "ES", "FTV", "IP", "LNT", "O",
                                            "REGN", "SPG", "UA", "VRTX", "WRK"]
    assert sum(sum(p.values()) for p in quality.dropped_rows.values()) == 23
    assert list(quality.skipped) == ["APTV"]
