"""Inputs beyond a symbol's bars: calendar fields, macro series and news, each computed by one
function that both evaluators call (on a whole calendar in batch, on one timestamp when streaming).

When a value is known: a bar's close time is its timestamp, except for a bar stamped at midnight
(a daily bar), which closes at ``features.daily_close_time``. A macro value stamped with a date is
known at that date's close time (so a daily bar sees the same day's value, an intraday bar the
previous session's); one stamped with a time of day is known at that time. A headline counts for
the first bar of its symbol that closes at or after its publication time (live: its availability
time, ``max(created_at, received_at)`` for a streamed headline, docs/live.md).
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import DataError

log = logging.getLogger("features")

CALENDAR_FIELDS = ("day_of_week", "day_of_month", "month", "days_to_month_end", "time_of_day")
NEWS_FIELDS = ("count", "score", "positive", "negative", "abs_score")


def close_times(times: pd.DatetimeIndex, daily_close: dt.time) -> np.ndarray:
    """int64 nanoseconds of each bar's close (see the module docstring)."""
    times = pd.DatetimeIndex(times).as_unit("ns")
    offset = pd.Timedelta(hours=daily_close.hour, minutes=daily_close.minute, seconds=daily_close.second)
    midnight = times == times.normalize()
    return np.where(midnight, (times + offset).asi8, times.asi8)


def close_time(stamp: pd.Timestamp, daily_close: dt.time) -> int:
    """``close_times`` of one timestamp, without building an index (the live path)."""
    stamp = pd.Timestamp(stamp).as_unit("ns")
    if stamp == stamp.normalize():
        stamp = stamp + pd.Timedelta(hours=daily_close.hour, minutes=daily_close.minute, seconds=daily_close.second)
    return stamp.value


def calendar_fields_at(stamp: pd.Timestamp) -> dict[str, np.ndarray]:
    """``calendar_fields`` of one timestamp with plain integer arithmetic (same values, faster)."""
    return {
        "day_of_week": np.array([float(stamp.day_of_week)]),
        "day_of_month": np.array([float(stamp.day)]),
        "month": np.array([float(stamp.month)]),
        "days_to_month_end": np.array([float(stamp.days_in_month - stamp.day)]),
        "time_of_day": np.array([stamp.hour + stamp.minute / 60 + stamp.second / 3600]),
    }


def calendar_fields(times: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """Fields of each timestamp: weekday (Monday 0), day of month, month, calendar days to the
    month's last day, time of day in hours (0 on daily bars)."""
    times = pd.DatetimeIndex(times)
    return {
        "day_of_week": times.day_of_week.to_numpy(np.float64),
        "day_of_month": times.day.to_numpy(np.float64),
        "month": times.month.to_numpy(np.float64),
        "days_to_month_end": (times.days_in_month - times.day).to_numpy(np.float64),
        "time_of_day": (times.hour + times.minute / 60 + times.second / 3600).to_numpy(np.float64),
    }


def _availability(stamps: pd.DatetimeIndex, daily_close: dt.time) -> np.ndarray:
    return close_times(stamps, daily_close)


class MacroSeries:
    """A macro series (VIX, a rate, the dollar index) read as of each bar's close."""

    def __init__(self, series: pd.Series, daily_close: dt.time):
        series = series.dropna().sort_index()
        self.known_at = _availability(pd.DatetimeIndex(series.index), daily_close)
        order = np.argsort(self.known_at, kind="stable")
        self.known_at = self.known_at[order]
        self.values = series.to_numpy(np.float64)[order]

    def asof(self, bar_close_ns: np.ndarray) -> np.ndarray:
        at = np.searchsorted(self.known_at, bar_close_ns, side="right") - 1
        return np.where(at >= 0, self.values[np.maximum(at, 0)], np.nan)


class NewsBook:
    """Each symbol's headlines as running totals over availability time, so the aggregate of any
    interval (previous bar's close, this bar's close] is a difference of two totals.

    ``append``/``extend`` add headlines later (the live news stream, between bars): each symbol's
    arrays stay sorted by time, so a headline counts for the first bar that closes at or after its
    time whenever it was added, as long as it is added before that bar is evaluated (the batch's
    rule; the streaming evaluator keeps the previous close time, not a position, so an insertion
    never shifts what it has counted)."""

    def __init__(self, news: pd.DataFrame, symbols: list[str], neutral_band: float):
        self.neutral_band = neutral_band
        self.index = {symbol: j for j, symbol in enumerate(symbols)}
        self.times: list[np.ndarray] = []
        self.totals: list[np.ndarray] = []  # (k + 1, fields): row 0 is zero
        stamps = pd.DatetimeIndex(news["timestamp"]).as_unit("ns").asi8 if len(news) else np.array([], np.int64)
        score = news["score"].to_numpy(np.float64) if len(news) else np.array([])
        symbol_of = news["symbol"].to_numpy() if len(news) else np.array([])
        per_field = self._fields(score)
        for symbol in symbols:
            rows = np.flatnonzero(symbol_of == symbol)
            order = rows[np.argsort(stamps[rows], kind="stable")]
            self.times.append(stamps[order])
            self.totals.append(np.vstack([np.zeros((1, len(NEWS_FIELDS))), np.cumsum(per_field[order], axis=0)]))

    def _fields(self, score: np.ndarray) -> np.ndarray:
        band = self.neutral_band
        return (np.column_stack([np.ones_like(score), score, (score > band).astype(float),
                                 (score < -band).astype(float), np.abs(score)])
                if len(score) else np.zeros((0, len(NEWS_FIELDS))))

    def __len__(self) -> int:
        return int(sum(len(t) for t in self.times))

    def append(self, symbol: str, time_ns: int, score: float) -> bool:
        """One headline of ``symbol`` available at ``time_ns`` (int64 ns, exchange time like the
        bars) with its VADER score (``score_headlines``); False for a symbol not in the book.
        After the headlines of the same time already there (a stable order, as the batch's)."""
        j = self.index.get(symbol)
        if j is None:
            return False
        times, totals = self.times[j], self.totals[j]
        at = int(np.searchsorted(times, time_ns, side="right"))
        row = self._fields(np.array([float(score)]))[0]
        self.times[j] = np.insert(times, at, np.int64(time_ns))
        # totals[k] sums the first k headlines: the rows after the insertion gain this headline
        self.totals[j] = np.vstack([totals[: at + 1], totals[at:] + row])
        return True

    def extend(self, news: pd.DataFrame) -> int:
        """``append`` of each row of a DataFrame(timestamp, symbol, score); returns how many were added."""
        if not len(news):
            return 0
        stamps = pd.DatetimeIndex(news["timestamp"]).as_unit("ns").asi8
        return sum(self.append(symbol, int(t), float(s))
                   for symbol, t, s in zip(news["symbol"], stamps, news["score"].to_numpy(np.float64)))

    def position(self, j: int, close_ns) -> np.ndarray:
        """Headlines of symbol j available at or before each close time."""
        return np.searchsorted(self.times[j], close_ns, side="right")

    def between(self, j: int, before: np.ndarray, upto: np.ndarray) -> np.ndarray:
        """(len, fields): totals of the headlines in each (before, upto] position range."""
        totals = self.totals[j]
        return totals[upto] - totals[before]


def score_headlines(headlines) -> np.ndarray:
    """VADER compound score in [-1, 1] of each headline (Hutto & Gilbert 2014, vaderSentiment)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return np.array([analyzer.polarity_scores(str(h))["compound"] for h in headlines], dtype=np.float64)


def _exchange_time(stamp: str, timezone: str) -> tuple[pd.Timestamp, bool]:
    """A stamp with a UTC offset converted to the exchange's zone; a naive one is exchange time
    (the second value says it was naive)."""
    parsed = pd.Timestamp(stamp)
    if parsed.tzinfo is not None:
        return parsed.tz_convert(timezone).tz_localize(None), False
    return parsed, True


def load_news(path, timezone: str) -> pd.DataFrame:
    """CSV ``timestamp,symbol,headline[,summary]`` (other columns ignored: ``python run.py news``
    writes ``id`` too) -> DataFrame(timestamp, symbol, headline, summary, score), timestamps naive in
    ``timezone`` (the exchange's). ``summary`` is "" where the file has none; ``score`` is the
    headline's.

    Repairs, each with a warning naming the file: a timestamp without a UTC offset is taken as exchange
    time (the first such row named: ``run.py news`` always writes the offset, so such a file was made
    by hand, and exchange time is how this documented format has always read it); rows with an empty
    headline are dropped; exact duplicates (same time, symbol and headline, and the same article
    ``id``/``article_id`` where the file has one: two articles may share a headline) are dropped but
    the first. Errors (:class:`DataError` with the row): no such file, not a CSV, a missing column, an
    unparseable timestamp, an empty symbol. Symbols outside the run's universe are the caller's to
    check (``features.from_config.engine_from_config``)."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(path, f"not a CSV file ({str(exc).splitlines()[0]})") from None
    columns = {c.strip().lower(): c for c in raw.columns}
    missing = [c for c in ("timestamp", "symbol", "headline") if c not in columns]
    if missing:
        raise DataError(path, f"missing column(s): {', '.join(missing)} (need timestamp,symbol,headline)", row=1)
    present = [c for c in ("timestamp", "symbol", "headline", "summary") if c in columns]
    frame = pd.DataFrame({c: raw[columns[c]].str.strip() for c in present})
    identity = next((c for c in ("id", "article_id") if c in columns), None)
    frame["_id"] = raw[columns[identity]].str.strip() if identity else ""
    if "summary" not in frame:
        frame["summary"] = ""
    stamps, naive = [], []
    for row, text in enumerate(frame["timestamp"], start=2):
        try:
            stamp, was_naive = _exchange_time(text, timezone)
        except (ValueError, TypeError):
            raise DataError(path, f"unparseable timestamp {text!r}", row=row) from None
        stamps.append(stamp)
        naive.append(was_naive)
    frame["timestamp"] = pd.DatetimeIndex(stamps).as_unit("ns") if stamps else pd.DatetimeIndex([], dtype="datetime64[ns]")
    frame["symbol"] = frame["symbol"].str.upper()
    empty = (frame["symbol"] == "").to_numpy()
    if empty.any():
        raise DataError(path, "missing symbol", row=int(empty.argmax()) + 2)
    if any(naive):
        log.warning("%s: %d timestamp(s) without a UTC offset (first at row %d) taken as exchange time (%s)",
                    path, sum(naive), naive.index(True) + 2, timezone)
    lines = np.arange(len(frame)) + 2
    no_headline = (frame["headline"] == "").to_numpy()
    if no_headline.any():
        log.warning("%s: %d row(s) with an empty headline (first at row %d) dropped", path,
                    int(no_headline.sum()), int(lines[no_headline][0]))
    repeated = frame.duplicated(["timestamp", "symbol", "headline", "_id"], keep="first").to_numpy() & ~no_headline
    if repeated.any():
        log.warning("%s: %d duplicate row(s) (same timestamp, symbol and headline as an earlier row; first at "
                    "row %d) dropped", path, int(repeated.sum()), int(lines[repeated][0]))
    frame = frame[~(no_headline | repeated)].reset_index(drop=True)
    return pd.DataFrame({"timestamp": pd.DatetimeIndex(frame["timestamp"]).as_unit("ns"),
                         "symbol": frame["symbol"].to_numpy(), "headline": frame["headline"].to_numpy(),
                         "summary": frame["summary"].to_numpy(),
                         "score": score_headlines(frame["headline"])})


def macro_name(path) -> str:
    """A series' name from its file name: ``VIX.csv`` -> ``vix``, ``DGS10-2013.csv`` -> ``dgs10_2013``."""
    return re.sub(r"[^a-z0-9]+", "_", Path(path).stem.lower()).strip("_")


def load_macro(paths) -> dict[str, pd.Series]:
    """CSV files of a date column and a value (a ``close`` column, else the only numeric column)."""
    series = {}
    for path in map(Path, paths):
        try:
            frame = pd.read_csv(path)
        except FileNotFoundError:
            raise DataError(path, "no such file") from None
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise DataError(path, f"not a CSV file ({str(exc).splitlines()[0]})") from None
        lower = {c.strip().lower().replace(" ", ""): c for c in frame.columns}
        stamp = next((lower[c] for c in ("datetime", "date", "timestamp", "time") if c in lower), None)
        if stamp is None:
            raise DataError(path, "missing date column", row=1)
        value = lower.get("close") or lower.get("adjclose")
        if value is None:
            numeric = [c for c in frame.columns if c != stamp
                       and pd.to_numeric(frame[c], errors="coerce").notna().mean() > 0.5]
            if len(numeric) != 1:
                raise DataError(path, "cannot tell the value column (name one 'close')", row=1)
            value = numeric[0]
        index = pd.to_datetime(frame[stamp], errors="coerce")
        if index.isna().any():
            raise DataError(path, f"unparseable date {frame[stamp][index.isna()].iloc[0]!r}",
                            row=int(index.isna().to_numpy().argmax()) + 2)
        values = pd.to_numeric(frame[value], errors="coerce")  # FRED writes "." for a missing day
        name = macro_name(path)
        if name in series:
            raise DataError(path, f"a second macro series named {name}")
        series[name] = pd.Series(values.to_numpy(np.float64), index=pd.DatetimeIndex(index), name=name)
    return series
