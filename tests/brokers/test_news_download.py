"""``python run.py news`` against the local Alpaca-compatible server (the real alpaca-py ``NewsClient``),
and the server's news stream with alpaca-py's ``NewsDataStream``."""
from __future__ import annotations

import csv
import threading
import time

import pandas as pd
import pytest
import requests

import run
from brokers.alpaca.local_server import AlpacaTestServer
from features.sources import load_news

TZ = "America/New_York"


@pytest.fixture
def server():
    with AlpacaTestServer() as test_server:
        yield test_server


@pytest.fixture
def cli(server, tmp_path, monkeypatch, capsys):
    """``run.py news ...`` with the server's keys and URL; returns (exit status, stdout, stderr)."""
    monkeypatch.setenv("APCA_API_KEY_ID", server.key_id)
    monkeypatch.setenv("APCA_API_SECRET_KEY", server.secret_key)
    config = tmp_path / "news.toml"
    config.write_text(f'[live]\ndata_url = "{server.urls["data_url"]}"\n'
                      "retry_attempts = 3\nretry_min_seconds = 0.01\nretry_max_seconds = 0.05\n")

    def call(*argv):
        status = run.main(["news", *argv, "--config", str(config)])
        captured = capsys.readouterr()
        return status, captured.out, captured.err
    return call


def _article(i: int, symbols, minute: int, **extra) -> dict:
    created = pd.Timestamp("2024-01-02 14:30", tz="UTC") + pd.Timedelta(minutes=minute)
    return {"id": i, "headline": f"Headline {i} great results", "summary": f"Summary {i}",
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"), "symbols": list(symbols), **extra}


def _rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _news_requests(server) -> list[dict]:
    return [query for method, path, query in server.requests if path == "/v1beta1/news"]


def test_download_follows_pages_one_row_per_requested_symbol(server, cli, tmp_path):
    items = [_article(i, ["AAPL"] if i % 2 else ["MSFT"], i) for i in range(1, 121)]
    items[4]["symbols"] = ["AAPL", "MSFT", "XOM"]  # tagged with two requested symbols and one not
    items.append(_article(500, ["XOM"], 200))  # not requested at all
    items.append(_article(501, ["AAPL"], 60 * 24 * 10))  # after --end
    server.add_news(items)
    out = tmp_path / "news.csv"

    status, printed, _ = cli("--symbols", "aapl, MSFT", "--start", "2024-01-01", "--end", "2024-01-05",
                             "--out", str(out))

    assert status == 0
    queries = _news_requests(server)
    assert len(queries) == 3  # 120 articles, 50 a page
    assert all(q["limit"] == ["50"] and q["sort"] == ["asc"] and q["symbols"] == ["AAPL,MSFT"] for q in queries)
    rows = _rows(out)
    assert list(rows[0]) == ["timestamp", "symbol", "headline", "summary", "id"]
    assert len(rows) == 121
    assert sorted(r["symbol"] for r in rows if r["id"] == "5") == ["AAPL", "MSFT"]
    assert not [r for r in rows if r["symbol"] == "XOM" or r["id"] in ("500", "501")]
    assert len({(r["id"], r["symbol"]) for r in rows}) == len(rows)
    assert rows[0]["timestamp"] == "2024-01-02T14:31:00+00:00" and rows[0]["summary"] == "Summary 1"
    assert "121 new rows" in printed

    news = load_news(out, TZ)
    assert len(news) == 121
    first = news[news["headline"] == "Headline 1 great results"].iloc[0]
    assert first["timestamp"] == pd.Timestamp("2024-01-02 09:31")  # 14:31 UTC is 09:31 in New York
    assert first["symbol"] == "AAPL" and first["score"] > 0
    assert list(news["summary"][:1]) == ["Summary 1"]


def test_a_second_run_appends_only_the_new_rows(server, cli, tmp_path):
    server.add_news([_article(i, ["AAPL", "MSFT"] if i == 3 else ["AAPL"], i) for i in range(1, 4)]
                    + [_article(4, ["MSFT"], 1)])
    out = tmp_path / "news.csv"
    assert cli("--symbols", "AAPL,MSFT", "--start", "2024-01-01", "--end", "2024-01-05", "--out", str(out))[0] == 0
    before = _rows(out)
    assert len(before) == 5
    # later news, and one at the same minute as the newest already there
    server.add_news([_article(10, ["AAPL"], 3), _article(11, ["AAPL", "MSFT"], 30), _article(12, ["MSFT"], 40)])
    requests_before = len(_news_requests(server))

    status, printed, _ = cli("--symbols", "AAPL,MSFT", "--start", "2024-01-01", "--end", "2024-01-05",
                             "--out", str(out))

    assert status == 0
    after = _rows(out)
    assert after[:5] == before
    assert sorted((r["id"], r["symbol"]) for r in after[5:]) == [("10", "AAPL"), ("11", "AAPL"), ("11", "MSFT"),
                                                                 ("12", "MSFT")]
    resumed = _news_requests(server)[requests_before:]
    # both symbols' newest row is article 3 at 14:33: they continue from it, in one request
    assert [q["start"][0] for q in resumed] == ["2024-01-02T14:33:00Z"]
    assert "4 new rows" in printed
    # a third run finds nothing new
    assert cli("--symbols", "AAPL,MSFT", "--start", "2024-01-01", "--end", "2024-01-05", "--out", str(out))[0] == 0
    assert _rows(out) == after


def test_resume_per_symbol_and_a_cut_last_line(server, cli, tmp_path, caplog):
    server.add_news([_article(1, ["AAPL"], 1), _article(2, ["MSFT"], 2), _article(3, ["AAPL"], 50)])
    out = tmp_path / "news.csv"
    out.write_text("timestamp,symbol,headline,summary,id\n"
                   "2024-01-02T14:31:00+00:00,AAPL,Headline 1 great results,Summary 1,1\n"
                   "2024-01-02T14:32:00+00:00,MSFT,Headline 2 be")  # a run killed mid-write
    status, _, _ = cli("--symbols", "AAPL,MSFT", "--start", "2024-01-01", "--end", "2024-01-05", "--out", str(out))
    assert status == 0
    assert "last line is incomplete" in caplog.text
    rows = _rows(out)
    assert [(r["id"], r["symbol"]) for r in rows] == [("1", "AAPL"), ("2", "MSFT"), ("3", "AAPL")]
    starts = {q["symbols"][0]: q["start"][0] for q in _news_requests(server)}
    assert starts == {"AAPL": "2024-01-02T14:31:00Z", "MSFT": "2024-01-01T05:00:00Z"}  # midnight in New York


def test_symbols_from_the_data_files(server, cli, tmp_path):
    server.add_news([_article(1, ["AAPL", "XOM"], 1), _article(2, ["ZZZZ"], 2)])
    out = tmp_path / "news.csv"
    status, printed, _ = cli("--data", "data/sample", "--start", "2024-01-02", "--end", "2024-01-02",
                             "--out", str(out))
    assert status == 0
    (query,) = _news_requests(server)
    assert len(query["symbols"][0].split(",")) == 28 and "AAPL" in query["symbols"][0]
    assert sorted(r["symbol"] for r in _rows(out)) == ["AAPL", "XOM"]


def test_a_rate_limited_page_is_retried(server, cli, tmp_path):
    server.add_news([_article(i, ["AAPL"], i) for i in range(1, 61)])
    server.rate_limit_next(times=1)
    out = tmp_path / "news.csv"
    status, _, _ = cli("--symbols", "AAPL", "--start", "2024-01-02", "--end", "2024-01-02", "--out", str(out))
    assert status == 0
    assert len(_news_requests(server)) == 3  # the refused one, then two pages
    assert len(_rows(out)) == 60


def test_rate_limited_beyond_the_retries_is_one_line(server, cli, tmp_path):
    server.add_news([_article(1, ["AAPL"], 1)])
    server.rate_limit_next(times=5)
    status, _, err = cli("--symbols", "AAPL", "--start", "2024-01-02", "--end", "2024-01-02",
                         "--out", str(tmp_path / "news.csv"))
    assert status == 2
    assert "HTTP 429" in err and "after 3 attempts" in err and "resume" in err
    assert len(err.strip().splitlines()) == 1
    assert len(_news_requests(server)) == 3


@pytest.mark.parametrize("argv, message", [
    (["--symbols", "AAPL", "--start", "2024-13-01"], "--start: '2024-13-01' is not a date"),
    (["--symbols", "AAPL", "--start", "2024-01-05", "--end", "2024-01-01"], "--start 2024-01-05 is after --end 2024-01-01"),
    (["--symbols", " , ", "--start", "2024-01-01"], "no symbols"),
    (["--symbols", "AAPL", "--data", "data/sample", "--start", "2024-01-01"], "--symbols or --data, not both"),
])
def test_bad_arguments_are_one_line_errors(cli, tmp_path, argv, message):
    status, _, err = cli(*argv, "--out", str(tmp_path / "news.csv"))
    assert status == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "news.csv").exists()


def test_missing_keys_and_refused_keys(server, cli, tmp_path, monkeypatch):
    out = str(tmp_path / "news.csv")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "wrong-secret")
    status, _, err = cli("--symbols", "AAPL", "--start", "2024-01-01", "--end", "2024-01-02", "--out", out)
    assert status == 2 and "refused the keys" in err and "wrong-secret" not in err
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("APCA_API_KEY_ID")
    status, _, err = cli("--symbols", "AAPL", "--start", "2024-01-01", "--end", "2024-01-02", "--out", out)
    assert status == 2 and "Alpaca keys missing" in err


def test_rest_endpoint_shape_and_options(server):
    server.add_news([_article(1, ["AAPL"], 1, content="<p>body</p>"), _article(2, ["MSFT"], 2)])
    headers = {"APCA-API-KEY-ID": server.key_id, "APCA-API-SECRET-KEY": server.secret_key}
    url = server.urls["data_url"] + "/v1beta1/news"
    answer = requests.get(url, headers=headers, timeout=5).json()
    assert [a["id"] for a in answer["news"]] == [2, 1]  # newest first by default
    assert answer["next_page_token"] is None
    assert set(answer["news"][0]) >= {"id", "headline", "summary", "author", "created_at", "updated_at", "symbols",
                                      "source", "url", "content", "images"}
    assert answer["news"][1]["content"] == ""  # without include_content
    answer = requests.get(url, headers=headers, timeout=5, params={
        "symbols": "AAPL", "include_content": "true", "exclude_contentless": "true"}).json()
    assert [(a["id"], a["content"]) for a in answer["news"]] == [(1, "<p>body</p>")]
    assert requests.get(url, headers=headers, timeout=5, params={"limit": 51}).status_code == 422


def test_news_stream_delivers_pushed_articles_to_alpaca_py(server):
    from alpaca.data.live.news import NewsDataStream

    got, subscribed = [], threading.Event()
    stream = NewsDataStream(server.key_id, server.secret_key, url_override=server.urls["news_stream_url"])

    async def on_news(article):
        got.append(article)

    stream.subscribe_news(on_news, "AAPL")
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while server.news_connected() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.news_connected() == 1
        stored = server.push_news([_article(7, ["AAPL", "MSFT"], 5), _article(8, ["MSFT"], 6)])
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [a.id for a in got] == [7]
        assert got[0].headline == "Headline 7 great results" and got[0].symbols == ["AAPL", "MSFT"]
        assert got[0].created_at == pd.Timestamp("2024-01-02 14:35", tz="UTC").to_pydatetime()
        assert [a["id"] for a in stored] == [7, 8] and len(server.news) == 2  # in the REST history too
    finally:
        stream.stop()
        thread.join(5)
