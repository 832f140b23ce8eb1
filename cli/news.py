"""``python run.py news``: download Alpaca's news headlines of some symbols into the CSV ``data.news``
reads (``timestamp,symbol,headline,summary,id``).

One row per (article, requested symbol): an article tagged with several of the symbols gives one row
for each; symbols it is tagged with but not asked for are ignored. ``timestamp`` is the article's
``created_at`` in ISO 8601 with its UTC offset (``+00:00``); ``id`` is Alpaca's article id.

Resumable, per symbol: given an ``--out`` that exists, its rows are kept and each symbol is asked for
from its newest row's time (inclusive; ``--start`` for a symbol with no row), so a run interrupted or
repeated later with a later ``--end`` fetches only what is missing; an (id, symbol) already in the file
is never written again. Rows are appended a page at a time, flushed and synced, so an interruption
loses nothing already written (a last line cut short is dropped with a warning at the next run).
A period before a symbol's newest row that the file lacks (an earlier ``--start`` than before) is not
filled in: download it to another file.

Keys: ``APCA_API_KEY_ID``/``APCA_API_SECRET_KEY`` (environment or ``.env``), never printed;
``live.data_url`` overrides Alpaca's URL. The news is Benzinga's, for the account holder's use under
Alpaca's market data terms: check them before sharing a downloaded file.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import logging
import os
from pathlib import Path

import pandas as pd

from cli.common import add_config_option, add_data_option, config_from_args, load_data
from common.errors import DataError, UserError

log = logging.getLogger("news")

COLUMNS = ("timestamp", "symbol", "headline", "summary", "id")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbols", metavar="A,B",
                        help="comma-separated symbols (default: the symbols of --data or the config's data.paths)")
    add_data_option(parser)
    parser.add_argument("--start", required=True, metavar="YYYY-MM-DD",
                        help="first day (exchange time, features.exchange_timezone)")
    parser.add_argument("--end", metavar="YYYY-MM-DD", help="last day, included (default: today)")
    parser.add_argument("--out", required=True, metavar="FILE.csv",
                        help="the news CSV; an existing one is kept and continued, each symbol from its newest row")
    add_config_option(parser)


def _day(text: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"{option}: {text!r} is not a date (YYYY-MM-DD)") from None


def _symbols(args, cfg) -> list[str]:
    if args.symbols is not None and args.data:
        raise UserError("give --symbols or --data, not both")
    if args.symbols is not None:
        symbols = sorted({s.strip().upper() for s in args.symbols.split(",") if s.strip()})
    else:
        symbols = sorted(load_data(cfg))
    if not symbols:
        raise UserError("no symbols: give --symbols A,B or --data PATH")
    return symbols


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from brokers.alpaca.credentials import load_credentials, protect_logging
    from brokers.alpaca.news import SYMBOLS_PER_REQUEST, news_client, news_pages

    start_day = _day(args.start, "--start")
    cfg = config_from_args(args)
    tz = cfg.features.exchange_timezone
    end_day = _day(args.end, "--end") if args.end else pd.Timestamp.now(tz).date()
    if start_day > end_day:
        raise UserError(f"--start {start_day} is after --end {end_day}")
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise UserError(f"--out {out}: the news file is a .csv file")
    symbols = _symbols(args, cfg)
    start = pd.Timestamp(start_day, tz=tz).tz_convert("UTC")
    end = (pd.Timestamp(end_day + dt.timedelta(days=1), tz=tz) - pd.Timedelta(seconds=1)).tz_convert("UTC")
    credentials = load_credentials()
    protect_logging(credentials.secrets)

    seen, newest, kept = read_existing(out)
    groups: dict[pd.Timestamp, list[str]] = {}
    for symbol in symbols:
        since = max(start, newest[symbol]) if symbol in newest else start
        if since <= end:
            groups.setdefault(since, []).append(symbol)
    if kept:
        log.info("%s: %d rows kept; continuing each symbol from its newest row", out, kept)

    client = news_client(credentials, cfg.live)
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.exists() or out.stat().st_size == 0
    added = pages = articles = 0
    with open(out, "a", newline="", encoding="utf-8") as handle, \
            tqdm(total=len(symbols), desc="news", unit="symbol", disable=None) as bar:
        writer = csv.writer(handle)
        if new:
            writer.writerow(COLUMNS)
            _sync(handle)
        bar.update(len(symbols) - sum(len(group) for group in groups.values()))
        for since, group in sorted(groups.items()):
            for at in range(0, len(group), SYMBOLS_PER_REQUEST):
                chunk = group[at:at + SYMBOLS_PER_REQUEST]
                wanted = set(chunk)
                for page in news_pages(client, chunk, since, end):
                    pages += 1
                    articles += len(page)
                    rows = []
                    for article in page:
                        headline = _one_line(article.get("headline"))
                        if not headline:
                            continue
                        stamp = pd.Timestamp(article["created_at"]).tz_convert("UTC").isoformat()
                        for symbol in sorted(wanted.intersection(article.get("symbols") or [])):
                            key = (str(article["id"]), symbol)
                            if key in seen:
                                continue
                            seen.add(key)
                            rows.append((stamp, symbol, headline, _one_line(article.get("summary")), key[0]))
                    writer.writerows(rows)
                    _sync(handle)
                    added += len(rows)
                    bar.set_postfix(pages=pages, articles=articles, rows=added, refresh=False)
                bar.update(len(chunk))
    print(f"{added} new rows ({articles} articles in {pages} pages) for {len(symbols)} symbols, "
          f"{start_day} to {end_day} -> {out} ({kept + added} rows)")
    return 0


def _one_line(text) -> str:
    return " ".join(str(text or "").split())


def _sync(handle) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def read_existing(path: Path) -> tuple[set, dict, int]:
    """(the (id, symbol) pairs, each symbol's newest time (UTC), the row count) of a news file written
    before; nothing when there is none. A last line without its end (a run killed while writing) is
    cut off with a warning."""
    if not path.exists() or path.stat().st_size == 0:
        return set(), {}, 0
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        log.warning("%s: the last line is incomplete (an interrupted run): dropped", path)
        with open(path, "r+b") as handle:
            handle.truncate(keep)
        if keep == 0:
            return set(), {}, 0
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [name.strip().lower() for name in next(reader, [])]
        missing = [name for name in ("timestamp", "symbol", "id") if name not in header]
        if missing:
            raise DataError(path, f"not a file of python run.py news: missing column(s) {', '.join(missing)} "
                                  f"(give another --out)", row=1)
        if header != list(COLUMNS):
            raise DataError(path, f"columns {','.join(header)}, not {','.join(COLUMNS)} (give another --out)", row=1)
        at = {name: header.index(name) for name in ("timestamp", "symbol", "id")}
        seen, newest, count = set(), {}, 0
        for row_number, fields in enumerate(reader, start=2):
            if not fields:
                continue
            if len(fields) != len(header):
                raise DataError(path, f"{len(fields)} fields, the header has {len(header)}", row=row_number)
            symbol = fields[at["symbol"]].strip().upper()
            try:
                stamp = pd.Timestamp(fields[at["timestamp"]])
            except ValueError:
                raise DataError(path, f"unparseable timestamp {fields[at['timestamp']]!r}", row=row_number) from None
            if stamp.tzinfo is None:
                raise DataError(path, f"timestamp {fields[at['timestamp']]!r} has no UTC offset", row=row_number)
            stamp = stamp.tz_convert("UTC")
            seen.add((fields[at["id"]].strip(), symbol))
            if symbol not in newest or stamp > newest[symbol]:
                newest[symbol] = stamp
            count += 1
    return seen, newest, count
