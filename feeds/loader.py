"""Load OHLCV bars from CSV files; refuse a bad file with one line naming the file, the row and the problem.

Formats (one symbol per file, daily or intraday bars):
- Yahoo: ``Date,Open,High,Low,Close,Adj Close,Volume``.
- Backtrader's samples: ``Date[,Time],Open,High,Low,Close,Volume,OpenInterest``; a header without
  ``Time`` over rows that carry one (as in some of Backtrader's own files) is read as Date + Time.
- Kaggle S&P 500: ``date,open,high,low,close,volume,Name``.
- Any CSV whose header names the columns below, in any order, delimited by ``,`` ``;`` tab or ``|``.

Column names are matched ignoring case, spaces, ``_``, ``-`` and ``.`` (``Adj Close`` = ``adj_close``
= ``AdjClose``); other columns are ignored. Accepted names:
- time stamp: ``datetime``, ``date``, ``timestamp`` or ``time``; ``Date`` beside ``Time`` is combined;
- ``open``/``o``, ``high``/``h``, ``low``/``l``, ``close``/``c`` (required);
- ``adjclose``/``adjustedclose`` (optional), ``volume``/``vol``/``v`` (optional: 0.0 with a
  warning when absent), ``openinterest``/``oi`` (optional: 0.0 when absent or empty);
- symbol: ``symbol``, ``ticker`` or ``name`` (first present in that order).
Two columns meaning the same thing (``Close`` and ``c``) are an error, not a guess.

Time stamps: ``YYYY-MM-DD``, ``YYYYMMDD``, ``MM/DD/YYYY`` (never day-first: ``02/03/2010`` is
February 3rd), each optionally followed by ``HH:MM[:SS[.fff]]``, or ISO 8601 with ``T``. Time stamps
with a UTC offset are converted to UTC, then the zone is dropped: every index is tz-naive.

Symbol: the single value of the symbol column, else the file name with a trailing ``_data`` and
trailing ``-YYYY[-YYYY]`` removed (``AAPL_data.csv``, ``orcl-1995-2014.txt``, ``msft.csv`` ->
``AAPL``, ``ORCL``, ``MSFT``). Symbols are upper-case everywhere (bars and sector map).

Adjustment: with an ``Adj Close`` column, ratio = adj_close / close; open, high, low and close are
multiplied by the ratio and volume divided by it, so dollar volume is unchanged (Backtrader's
``adjclose`` and ``adjvolume``). The range checks below run on the file's raw prices.

Errors (``common.errors.DataError``; the row is the line number an editor shows, header = 1; when a
file has several problems the one on the earliest row is reported): the file does not exist or
cannot be read; empty file; not a CSV file (NUL bytes, not UTF-8 text, a single column); header only;
missing or ambiguous columns; a row with more fields than the header (a row with fewer reads as
missing values); missing date; impossible or unparseable date; date outside 1677-2262 (pandas'
nanosecond range); non-numeric or infinite value; missing price or volume (unless
``drop_missing_prices``); non-positive price; high below low; open or close outside [low, high]
(relative tolerance 1e-9 for rounding in vendor files); negative volume or open interest; duplicate
time stamps (both rows named); several symbols in one file; fewer bars than the warm-up needs.

Warnings (logger ``feeds``, one line naming the file): rows out of order (they are sorted); rows
dropped for missing prices or volume when ``drop_missing_prices`` is set (with the count); no volume
column. Row numbers assume one line per row (no line breaks inside quoted fields).
"""
from __future__ import annotations

import collections
import csv
import io
import logging
import os
import re
import warnings
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from common.errors import DataError, TooFewBars

log = logging.getLogger("feeds")

BAR_COLUMNS = ("open", "high", "low", "close", "volume", "openinterest")
INVALID_ROWS = ("error", "drop")  # data.invalid_rows: refuse a file with an invalid row, or drop the row
DROP_HINT = 'data.invalid_rows = "drop" drops such rows with a warning'
_LOGGED_DROPS = 5  # rows dropped per file that are logged one by one (the rest are counted)


@dataclasses.dataclass
class DataQuality:
    """What loading a universe dropped and skipped (``metrics.json``'s ``data_quality``)."""

    dropped_rows: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)  # symbol -> problem -> rows
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # symbol -> why

    def to_dict(self) -> dict:
        return {"invalid_rows_dropped": {s: dict(sorted(p.items())) for s, p in sorted(self.dropped_rows.items())},
                "symbols_skipped": dict(sorted(self.skipped.items()))}

_PRICES = ("open", "high", "low", "close")
_NUMBER_ALIASES = {
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "adjclose": ("adjclose", "adjustedclose"),
    "volume": ("volume", "vol", "v"),
    "openinterest": ("openinterest", "oi"),
}
_STAMP_NAMES = ("datetime", "date", "timestamp", "time")
_SYMBOL_NAMES = ("symbol", "ticker", "name")
_DELIMITERS = (",", ";", "\t", "|")
_DATA_SUFFIXES = (".csv", ".txt")
_RANGE_TOLERANCE = 1e-9  # relative: vendor files round high/low and close separately
_TIME_OF_DAY = re.compile(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?")
_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_STAMP_RANGE = f"{pd.Timestamp.min.ceil('D'):%Y-%m-%d} to {pd.Timestamp.max.floor('D'):%Y-%m-%d}"  # nanoseconds
_PARSER_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def load_bars(path, *, drop_missing_prices: bool = False, invalid_rows: str = "error", min_bars: int = 1,
              start=None, end=None, quality: DataQuality | None = None) -> tuple[str, pd.DataFrame]:
    """One file -> (symbol, bars).

    bars: tz-naive DatetimeIndex named "datetime" (ascending, unique), float64 columns BAR_COLUMNS.
    invalid_rows: "error" refuses a file with an invalid row (the message names the row, the problem
    and this option); "drop" drops each such row with a warning naming the file, the row and the
    problem (counted per symbol in ``quality``). start/end (inclusive; a date without a time includes
    that whole day) cut the range after validation; min_bars is checked on the cut range
    (:class:`TooFewBars`).
    """
    if invalid_rows not in INVALID_ROWS:
        raise ValueError(f"invalid_rows must be one of {INVALID_ROWS}, not {invalid_rows!r}")
    path = Path(path)
    text = _read_text(path)
    frame, source, lines = _read_table(path, text)
    symbol = _symbol(path, frame, lines)
    bars, dropped = _validated_bars(path, frame, source, lines, drop_missing_prices, invalid_rows)
    if dropped and quality is not None:
        quality.dropped_rows[symbol] = dropped
    bars = _cut(bars, start, end)
    if len(bars) < min_bars:
        if start is not None or end is not None:
            span = f" between {start or 'the first bar'} and {end or 'the last bar'}"
        elif len(bars):
            span = f" ({_when(bars.index[0])} to {_when(bars.index[-1])})"
        else:
            span = ""
        raise TooFewBars(path, f"only {len(bars)} bars{span}, {min_bars} needed for the warm-up", symbol)
    return symbol, bars


def _when(stamp: pd.Timestamp) -> str:
    return f"{stamp:%Y-%m-%d}" if stamp == stamp.normalize() else str(stamp)


def load_universe(paths, *, drop_missing_prices: bool = False, invalid_rows: str = "error", min_bars: int = 1,
                  start=None, end=None, quality: DataQuality | None = None) -> dict[str, pd.DataFrame]:
    """Files and/or folders (a folder: its *.csv and *.txt files, sorted) -> {symbol: bars} sorted by symbol.

    Of several files, one too short for the warm-up (``min_bars``: a recent listing) is skipped with a
    warning (``quality.skipped``); a single file too short is an error, and so are all of them."""
    universe: dict[str, pd.DataFrame] = {}
    origin: dict[str, Path] = {}
    files = _data_files(paths)
    for file in files:
        try:
            symbol, bars = load_bars(file, drop_missing_prices=drop_missing_prices, invalid_rows=invalid_rows,
                                     min_bars=min_bars, start=start, end=end, quality=quality)
        except TooFewBars as exc:
            if len(files) == 1:
                raise
            log.warning("%s: %s: skipped", file, exc.problem)
            if quality is not None:
                quality.skipped[exc.symbol] = exc.problem
            continue
        if symbol in origin:
            raise DataError(file, f"symbol {symbol} is also in {origin[symbol]}")
        origin[symbol] = file
        universe[symbol] = bars
    if not universe:
        raise DataError(files[0].parent, f"none of the {len(files)} files has the {min_bars} bars the warm-up needs")
    return dict(sorted(universe.items()))


def load_sector_map(path) -> dict[str, str]:
    """CSV with a symbol (or ticker/name) column and a sector column -> {SYMBOL: sector}."""
    path = Path(path)
    text = _read_text(path)
    header_number, header_line = _first_lines(text, 1)[0]
    delimiter = _delimiter(path, header_line, header_number)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    for fields in reader:  # up to the header, past any blank lines before it
        if reader.line_num == header_number:
            header = [_normalise(name) for name in fields]
            break
    symbol_at = next((header.index(name) for name in _SYMBOL_NAMES if name in header), None)
    sector_at = header.index("sector") if "sector" in header else None
    missing = [name for name, at in (("symbol", symbol_at), ("sector", sector_at)) if at is None]
    if missing:
        raise DataError(path, f"missing column(s): {', '.join(missing)}", row=header_number)
    sectors: dict[str, str] = {}
    seen_at: dict[str, int] = {}
    for fields in reader:
        if not "".join(fields).strip():
            continue
        row = reader.line_num
        symbol, sector = (fields[at].strip() if at < len(fields) else "" for at in (symbol_at, sector_at))
        if not symbol or not sector:
            raise DataError(path, "missing symbol" if not symbol else f"missing sector for {symbol}", row=row)
        symbol = symbol.upper()
        if symbol in seen_at:
            raise DataError(path, f"symbol {symbol} appears twice (also row {seen_at[symbol]})", row=row)
        seen_at[symbol] = row
        sectors[symbol] = sector
    if not sectors:
        raise DataError(path, "no data rows (header only)")
    return sectors


def infer_bar_interval(index: pd.DatetimeIndex) -> tuple[str, int]:
    """(timeframe, compression) of bars, e.g. ("days", 1) or ("minutes", 5).

    Intraday: the most common spacing between bars of the same calendar day (overnight and weekend
    gaps ignored) in minutes, else seconds, else microseconds. Otherwise the most common gap in days:
    under 7 -> days, under 28 -> weeks, else the most common gap in calendar months (yearly bars are
    ("months", 12)). Ties go to the shorter spacing. Fewer than two bars: ("days", 1).
    """
    stamps = pd.DatetimeIndex(index).as_unit("ns").asi8
    if not (stamps[1:] > stamps[:-1]).all():
        stamps = np.unique(stamps)
    if len(stamps) < 2:
        return ("days", 1)
    second, minute, day = 10**9, 60 * 10**9, 86_400 * 10**9
    days = stamps // day
    same_day = days[1:] == days[:-1]
    if same_day.any():
        step = _mode(np.diff(stamps)[same_day])
        if step % minute == 0:
            return ("minutes", step // minute)
        if step % second == 0:
            return ("seconds", step // second)
        return ("microseconds", max(1, step // 1000))
    day_step = _mode(np.diff(days))
    if day_step < 7:
        return ("days", day_step)
    if day_step < 28:
        return ("weeks", round(day_step / 7))
    months = stamps.astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)
    return ("months", _mode(np.diff(months)))


def _mode(values: np.ndarray) -> int:
    distinct, counts = np.unique(values, return_counts=True)
    return int(distinct[np.argmax(counts)])  # argmax takes the first, i.e. the smallest, on ties


def _data_files(paths) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(path) for path in paths or ()]
    if not paths:
        raise DataError("data", "no data files given (--data PATH or [data] paths in the config)")
    files: dict[Path, Path] = {}  # resolved -> as given: a file named twice is loaded once
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _DATA_SUFFIXES)
            if not found:
                raise DataError(path, "no .csv or .txt file in this folder")
        elif path.exists():
            found = [path]
        else:
            raise DataError(path, "no such file or folder")
        for file in found:
            files.setdefault(file.resolve(), file)
    return list(files.values())


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except OSError as error:
        raise DataError(path, f"cannot read the file ({error.strerror})") from None
    if not raw or raw.isspace():
        raise DataError(path, "empty file")
    if b"\0" in raw:
        raise DataError(path, "not a CSV file (binary content)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(path, f"not a CSV file (byte 0x{raw[error.start]:02x} is not UTF-8 text)",
                        row=raw[:error.start].count(b"\n") + 1) from None


def _first_lines(text: str, count: int) -> list[tuple[int, str]]:
    """(line number, line) of the first `count` non-blank lines."""
    found, start, number = [], 0, 0
    while len(found) < count and start <= len(text):
        stop = text.find("\n", start)
        stop = len(text) if stop < 0 else stop
        number += 1
        line = text[start:stop].rstrip("\r")
        if line.strip():
            found.append((number, line))
        start = stop + 1
    return found


class _Lines:
    """Data row ordinal (as pandas numbers rows: blank lines skipped) -> line number in the file.

    Built only when a message needs it, so the happy path never splits the text.
    """

    def __init__(self, text: str, header_number: int):
        self._text, self._header_number, self._numbers = text, header_number, None

    def __getitem__(self, ordinal) -> int:
        if self._numbers is None:
            lines = self._text.split("\n")
            self._numbers = [number for number in range(self._header_number + 1, len(lines) + 1)
                             if lines[number - 1].strip()]
        return self._numbers[int(ordinal)]


def _normalise(name: str) -> str:
    return re.sub(r"[\s_.\-]", "", name).lower()


def _delimiter(path: Path, header_line: str, header_number: int) -> str:
    delimiter = max(_DELIMITERS, key=header_line.count)
    if not header_line.count(delimiter):
        raise DataError(path, f"not a CSV file (a single column: {header_line[:40]!r})", row=header_number)
    return delimiter


def _read_table(path: Path, text: str) -> tuple[pd.DataFrame, dict[str, str], _Lines]:
    """The columns we use, renamed to canonical fields; their names as in the file; the row->line map."""
    first = _first_lines(text, 2)
    header_number, header_line = first[0]
    delimiter = _delimiter(path, header_line, header_number)
    names = [name.strip() for name in next(csv.reader([header_line], delimiter=delimiter))]
    normal = [_normalise(name) for name in names]
    if len(first) < 2:
        _column_positions(path, names, normal, header_number)  # a missing column is the clearer message
        raise DataError(path, "no data rows (header only)")
    data_number, data_line = first[1]
    fields = next(csv.reader([data_line], delimiter=delimiter))
    if (len(fields) == len(names) + 1 and normal[0] == "date" and "time" not in normal
            and _TIME_OF_DAY.fullmatch(fields[1].strip())):
        names.insert(1, "Time")  # Backtrader: Date,Time rows under a header without Time
        normal.insert(1, "time")
    elif len(fields) > len(names):
        if any(field.strip() for field in fields[len(names):]):
            raise DataError(path, f"{len(fields)} fields, the header has {len(names)}", row=data_number)
        # a trailing delimiter on the rows only: name the empty fields so that pandas neither takes the
        # first column for an index nor drops fields of later rows silently
        extra = len(fields) - len(names)
        names, normal = names + [""] * extra, normal + [""] * extra

    position = _column_positions(path, names, normal, header_number)
    field_at = {at: field for field, at in position.items()}
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=delimiter, header=0, skipinitialspace=True,
            names=[field_at.get(at, f"unused {at}") for at in range(len(names))],
            # text columns stay text (YYYYMMDD dates, numeric tickers); pandas' explicit str dtype is
            # several times slower than its inference, so ask for it only when the data need it
            dtype={field: "str" for field in ("datetime", "date", "time", "symbol")
                   if field in position and _NUMBER.fullmatch(fields[position[field]].strip())},
        )  # no usecols: with it pandas silently ignores extra fields on a row
    except pd.errors.ParserError as error:
        found = _PARSER_FIELDS.search(str(error))
        if found:
            expected, line, saw = found.groups()
            raise DataError(path, f"{saw} fields, the header has {expected}", row=int(line)) from None
        raise DataError(path, f"not a CSV file ({str(error).strip().splitlines()[0]})") from None
    return frame[list(position)], {field: names[at] for field, at in position.items()}, _Lines(text, header_number)


def _column_positions(path: Path, names: list[str], normal: list[str], header_number: int) -> dict[str, int]:
    def ambiguous(what: str, hits: list[int]):
        return DataError(path, f"ambiguous columns for {what}: {', '.join(names[at] for at in hits)}",
                         row=header_number)

    position: dict[str, int] = {}
    for field, aliases in _NUMBER_ALIASES.items():
        hits = [at for at, name in enumerate(normal) if name in aliases]
        if len(hits) > 1:
            raise ambiguous(field, hits)
        if hits:
            position[field] = hits[0]
    hits = [at for at, name in enumerate(normal) if name in _STAMP_NAMES]
    if len(hits) == 1:
        position["datetime"] = hits[0]
    elif sorted(normal[at] for at in hits) == ["date", "time"]:
        position.update({normal[at]: at for at in hits})
    elif hits:
        raise ambiguous("the date", hits)
    symbol = next((name for name in _SYMBOL_NAMES if name in normal), None)
    if symbol is not None:
        position["symbol"] = normal.index(symbol)
    missing = ([] if "datetime" in position or "date" in position else ["date"])
    missing += [field for field in _PRICES if field not in position]
    if missing:
        raise DataError(path, f"missing column(s): {', '.join(missing)} (columns found: {', '.join(names)})",
                        row=header_number)
    return position


def _symbol(path: Path, frame: pd.DataFrame, lines: _Lines) -> str:
    if "symbol" in frame:
        symbols = {str(value).strip().upper() for value in frame["symbol"].dropna().unique()} - {""}
        if len(symbols) > 1:  # only now look for the row
            column = _text(frame["symbol"]).fillna("").str.upper()
            first = column[column != ""].iloc[0]
            at = int(((column != "") & (column != first)).to_numpy().argmax())
            raise DataError(path, f"several symbols in one file ({first} and {column.iloc[at]})", row=lines[at])
        if symbols:
            return symbols.pop()
    stem = re.sub(r"_data$", "", path.stem, flags=re.IGNORECASE)
    symbol = re.sub(r"(-\d{4}){1,2}$", "", stem).upper()
    if not symbol:
        raise DataError(path, "cannot tell the symbol: no symbol/ticker/name column and no usable file name")
    return symbol


def _text(column: pd.Series) -> pd.Series:
    """Entries as stripped text, missing ones kept missing (an all-empty column is read as float)."""
    return column.astype("str").str.strip()


def _numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """float64 values (NaN where missing or not a number) and the mask of non-numeric entries."""
    if column.dtype.kind in "iuf":
        values = column.to_numpy(dtype=np.float64, copy=True)
        bad = np.isinf(values)
    else:  # strings (a stray word) or booleans: read each entry as text
        text = _text(column)
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, copy=True)
        bad = np.isinf(values) | (np.isnan(values) & (text.notna() & (text != "")).to_numpy())
    values[bad] = np.nan
    return values, bad


def _stamps(frame: pd.DataFrame) -> tuple[pd.Series, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(raw text, datetime64[ns] UTC-naive values, missing, unparseable and out-of-range masks)."""
    if "datetime" in frame:
        raw = _text(frame["datetime"])
    else:
        raw = _text(frame["date"]) + " " + _text(frame["time"])
    missing = (raw.isna() | (raw == "")).to_numpy()
    fmt = "ISO8601"
    if not missing.all():
        first = raw[~missing].iloc[0]
        if not _ISO_DATE.match(first):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pandas warns when it guesses day-first
                fmt = guess_datetime_format(first) or "ISO8601"
            if 0 <= fmt.find("%d") < fmt.find("%m"):  # never day-first: 02/03/2010 is February 3rd
                fmt = fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")
    parsed = pd.to_datetime(raw, format=fmt, errors="coerce", utc=True).dt.tz_convert(None).to_numpy()
    unparseable = np.isnat(parsed) & ~missing
    out_of_range = (parsed < np.datetime64(pd.Timestamp.min)) | (parsed > np.datetime64(pd.Timestamp.max))
    values = np.where(out_of_range, np.datetime64("NaT"), parsed).astype("datetime64[ns]")
    return raw, values, missing, unparseable, out_of_range


def _num(value: float) -> str:
    return f"{value:.15g}"  # as written in the file: 10, 12.5, 1234567.89


def _validated_bars(path: Path, frame: pd.DataFrame, source: dict[str, str], lines: _Lines,
                    drop_missing_prices: bool, invalid_rows: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """The file's bars, and the rows dropped by problem (``invalid_rows = "drop"``)."""
    raw_stamps, stamps, missing_stamp, bad_stamp, far_stamp = _stamps(frame)
    numeric = [field for field in _NUMBER_ALIASES if field in frame]
    values, bad = {}, {}
    for field in numeric:
        values[field], bad[field] = _numbers(frame[field])
    required = [field for field in (*_PRICES, "adjclose", "volume") if field in values]
    missing = {field: np.isnan(values[field]) & ~bad[field] for field in required}
    missing_any = np.logical_or.reduce(list(missing.values()))
    open_, high, low, close = (values[field] for field in _PRICES)
    low_bound, high_bound = low * (1 - _RANGE_TOLERANCE), high * (1 + _RANGE_TOLERANCE)

    def outside(field: str, price: np.ndarray):
        return (price < low_bound) | (price > high_bound), lambda at: (
            f"{field} {_num(price[at])} is outside the bar's range [low {_num(low[at])}, high {_num(high[at])}]"), \
            f"{field} outside the range"

    # Every check at once, in this order; the earliest offending row wins, then the earlier check.
    # Each: (rows that fail it, the problem at a row, the problem's kind for the counts)
    checks = [(missing_stamp, lambda at: "missing date", "missing date"),
              (bad_stamp, lambda at: f"impossible or unparseable date {raw_stamps.iloc[at]!r}", "bad date"),
              (far_stamp, lambda at: f"date {raw_stamps.iloc[at]!r} is outside the supported range {_STAMP_RANGE}",
               "bad date")]
    checks += [(bad[field], lambda at, field=field: (
        f"non-numeric value {str(frame[field].iloc[at]).strip()!r} in column {source[field]}"), "non-numeric value")
        for field in numeric]
    if not drop_missing_prices or invalid_rows == "drop":
        checks.append((missing_any, lambda at: "missing value in column(s) " + ", ".join(
            source[field] for field in required if missing[field][at]), "missing value"))
    checks += [(values[field] <= 0, lambda at, field=field: (
        f"non-positive price {_num(values[field][at])} in column {source[field]}"), "non-positive price")
        for field in (*_PRICES, "adjclose") if field in values]
    checks += [(high < low_bound, lambda at: f"high {_num(high[at])} is below low {_num(low[at])}", "high below low"),
               outside("close", close), outside("open", open_)]
    checks += [(values[field] < 0, lambda at, field=field: (
        f"negative {field.replace('openinterest', 'open interest')} {_num(values[field][at])}"), "negative volume")
        for field in ("volume", "openinterest") if field in values]
    failing = [(mask, order) for order, (mask, _, _) in enumerate(checks) if mask.any()]
    dropped: dict[str, int] = {}
    if failing and invalid_rows == "drop":
        drop = _drop_invalid(path, lines, checks, failing, dropped)
    elif failing:
        at, order = min((int(mask.argmax()), order) for mask, order in failing)
        raise DataError(path, checks[order][1](at), row=lines[at], hint=DROP_HINT)
    else:
        drop = missing_any  # nothing else failed: only missing values, dropped by drop_missing_prices

    if "volume" not in values:
        log.warning("%s: no volume column, volume set to 0", path)
        values["volume"] = np.zeros(len(frame))
    values["openinterest"] = np.nan_to_num(values.get("openinterest", np.zeros(len(frame))), nan=0.0)
    if "adjclose" in values:  # Backtrader's adjclose + adjvolume: prices scaled, dollar volume kept
        ratio = values["adjclose"] / close
        for field in _PRICES:
            values[field] = values[field] * ratio
        values["volume"] = values["volume"] / ratio

    rows = np.arange(len(frame))  # frame position of each bar, for messages
    if drop.any():
        rows = np.flatnonzero(~drop)
        if not dropped:
            log.warning("%s: dropped %d rows with a missing price or volume (drop_missing_prices)",
                        path, len(frame) - len(rows))
        stamps = stamps[rows]
    backwards = np.flatnonzero(stamps[1:] < stamps[:-1])
    if len(backwards):
        first_backwards = lines[rows[backwards[0] + 1]]
        order = np.argsort(stamps, kind="stable")  # stable: equal stamps keep their file order
        rows, stamps = rows[order], stamps[order]
    repeated = np.flatnonzero(stamps[1:] == stamps[:-1])
    if len(repeated):  # the earliest second occurrence in the file
        at = repeated[np.argmin(rows[repeated + 1])]
        raise DataError(path, f"duplicate timestamp {raw_stamps.iloc[rows[at + 1]]} (same as row {lines[rows[at]]})",
                        row=lines[rows[at + 1]])
    if len(backwards):
        log.warning("%s: rows out of order (first at row %d), sorted", path, first_backwards)

    table = np.empty((len(BAR_COLUMNS), len(rows)))  # one block, column by column
    sorted_or_dropped = len(rows) != len(frame) or len(backwards)
    for line, field in zip(table, BAR_COLUMNS):
        line[:] = values[field][rows] if sorted_or_dropped else values[field]
    return pd.DataFrame(table.T, index=pd.DatetimeIndex(stamps, name="datetime"), columns=list(BAR_COLUMNS)), dropped


def _drop_invalid(path: Path, lines: _Lines, checks: list, failing: list, dropped: dict[str, int]) -> np.ndarray:
    """The rows failing any check (``invalid_rows = "drop"``): the first few logged with their row and
    problem, all counted in ``dropped`` by the kind of their first problem."""
    drop = np.logical_or.reduce([mask for mask, _ in failing])
    first_problem = np.full(len(drop), len(checks))
    for mask, order in reversed(failing):  # the earlier check wins a row that fails several
        first_problem[mask] = order
    kinds = collections.Counter()
    for n, at in enumerate(np.flatnonzero(drop)):
        order = int(first_problem[at])
        kinds[checks[order][2]] += 1
        if n < _LOGGED_DROPS:
            log.warning("%s, row %d: %s: row dropped (data.invalid_rows = drop)", path, lines[at], checks[order][1](at))
    if len(kinds) and sum(kinds.values()) > _LOGGED_DROPS:
        log.warning("%s: %d invalid rows dropped in all (%s)", path, sum(kinds.values()),
                    ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())))
    dropped.update(kinds)
    return drop


def _cut(bars: pd.DataFrame, start, end) -> pd.DataFrame:
    """Inclusive start/end; an end at midnight (a date) keeps that whole day's bars."""
    first, stop = 0, len(bars)
    if start is not None:
        first = bars.index.searchsorted(pd.Timestamp(start), side="left")
    if end is not None:
        last = pd.Timestamp(end)
        if last == last.normalize():
            stop = bars.index.searchsorted(last + pd.Timedelta(days=1), side="left")
        else:
            stop = bars.index.searchsorted(last, side="right")
    return bars.iloc[first:stop]
