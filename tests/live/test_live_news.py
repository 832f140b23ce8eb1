"""News sentiment live, against the local Alpaca server: a session whose features read news (a
``data.news`` file configured) backfills the headlines published since the warm-up's first bar over
REST, subscribes the news stream, journals every headline once and counts a pushed one at the next bar;
a restart backfills what it missed without duplicates; the session's replay (the daily reconciliation's,
from the session folder's ``news.csv``) computes the same sentiment features, bar by bar."""
import datetime as dt
import json

import numpy as np
import pytest
from numpy.testing import assert_allclose

from brokers.alpaca.local_server import AlpacaTestServer
from brokers.journal import Journal
from engine.daily_reconciliation import SESSION_FILE, read_bars, replay, replay_config
from tests.live.harness import Deployment, wait_for
from tests.live.news_strategy import NewsProbe

S = dt.timedelta(seconds=1)


@pytest.fixture
def server():
    with AlpacaTestServer(commission_bps=1.0, slippage_bps=5.0) as srv:
        yield srv


def news_deployment(server, tmp_path, **kwargs) -> Deployment:
    """The harness's deployment with ``data.news`` (an old headline file: it only puts the sentiment
    group in the registry; live reads the journal's) and bars closing at their stamp, midnight too."""
    csv = tmp_path / "headlines.csv"
    csv.write_text("timestamp,symbol,headline\n2013-02-11 08:30:00,AAPL,Apple shares slip\n")
    extra = f'[data]\nnews = "{csv}"\n\n[features]\ndaily_close_time = "00:00"\n'
    return Deployment(server, tmp_path, strategy_extra=extra, history=30, live=12, **kwargs)


def article(symbols, created, headline="Apple soars to a record on strong iPhone sales", **extra):
    return {"symbols": symbols, "created_at": created, "headline": headline, "summary": "", **extra}


def at(probe, when, symbol="AAPL", name="news_count_1"):
    return probe.value(when, symbol, name)


@pytest.fixture
def deployment(server, tmp_path):
    deployed = news_deployment(server, tmp_path, reconciliation=True)
    NewsProbe.sessions.clear()
    yield deployed
    if deployed.thread is not None and deployed.thread.is_alive():
        deployed.stop()


def push_headline(deployment, items):
    """Push articles and wait until the runner's stream thread has queued them (drained at the next bar)."""
    news = deployment.runner.news
    before = news.pending()
    deployment.server.push_news(items)
    wait_for(lambda: news.pending() >= before + 1, what="the headline on the news stream")


def test_pushed_headlines_count_at_the_next_bar_and_the_replay_agrees(deployment, server, tmp_path):
    history, live = deployment.history, deployment.live
    t = [g["AAPL"].datetime for g in live]
    # published during the warm-up: fetched at the start, counted from their created_at
    server.add_news([article(["AAPL"], history[10]["AAPL"].datetime + 30 * S, id=900),
                     article(["JPM", "MSFT"], history[20]["JPM"].datetime + 5 * S, headline="JPMorgan fined", id=901)])
    deployment.start(strategy_cls=NewsProbe)
    wait_for(lambda: server.news_connected() == 1, what="the news stream")
    deployment.push(live[:4])
    push_headline(deployment, [article(["AAPL"], t[3] + 30 * S, id=1)])  # after bar 3's close: counts at bar 4
    deployment.push(live[4:6])
    # published before bar 5 (already decided) but only arriving now: counts at bar 6, not earlier
    # (tagged with a symbol the session does not trade too: journaled for XOM only)
    push_headline(deployment, [article(["XOM", "MSFT"], t[2] + 10 * S, id=2,
                                       headline="Exxon faces a lawsuit over a terrible, deadly spill")])
    deployment.push(live[6:8])
    deployment.stop()

    probe = NewsProbe.sessions[0]
    assert at(probe, history[11]["AAPL"].datetime) == 1 and at(probe, history[10]["AAPL"].datetime) == 0
    assert at(probe, history[21]["JPM"].datetime, "JPM") == 1
    assert [at(probe, when) for when in t[2:7]] == [0, 0, 1, 0, 0]
    assert [at(probe, when, "XOM") for when in t[2:8]] == [0, 0, 0, 0, 1, 0]
    assert at(probe, t[6], "XOM", "sent_1") < -0.05 and at(probe, t[4], "AAPL", "sent_1") > 0.05

    journal = Journal(deployment.journal_url)
    rows = journal.news()
    journal.close()
    assert sorted((r["article_id"], r["symbol"], r["source"]) for r in rows) == [
        ("1", "AAPL", "stream"), ("2", "XOM", "stream"), ("900", "AAPL", "rest"), ("901", "JPM", "rest")]
    late = next(r for r in rows if r["symbol"] == "XOM")
    assert late["created_at"] == t[2] + 10 * S and late["available_at"] > t[5] and late["received_at"] < t[0]

    # the session's folder holds the headlines; its replay computes the same features at every bar
    folder = sorted((deployment.state / "sessions").iterdir())[-1]
    assert (folder / "news.csv").exists()
    cfg = replay_config(deployment.config, folder)
    facts = json.loads((folder / SESSION_FILE).read_text())
    replay(cfg, read_bars(folder / "bars"), facts, strategy_cls=NewsProbe, work_dir=tmp_path)
    again = NewsProbe.sessions[-1]
    assert list(again.seen) == list(probe.seen)
    for when, row in probe.seen.items():
        assert_allclose(again.seen[when], row, rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=str(when))
    assert np.nansum([at(again, w) for w in t[:8]]) == 1
    # and the daily reconciliation (its replay in a child process, from the same folder) found no difference
    reports = sorted((deployment.state / "reconciliation").glob("*.json"))
    report = json.loads(reports[-1].read_text())
    assert report["compared"] and report["differences"] == 0 and not report["alarms"]


def test_a_restart_backfills_missed_headlines_once(server, tmp_path):
    NewsProbe.sessions.clear()
    deployment = news_deployment(server, tmp_path)
    t = [g["AAPL"].datetime for g in deployment.live]
    try:
        deployment.start(strategy_cls=NewsProbe)
        wait_for(lambda: server.news_connected() == 1, what="the news stream")
        deployment.push(deployment.live[:3])
        push_headline(deployment, [article(["AAPL", "JPM"], t[2] + 20 * S, id=1)])
        deployment.push(deployment.live[3:5])
        deployment.stop()
        # published while it was down (never streamed to it): the restart fetches it, and the stored one again
        server.add_news([article(["AAPL"], t[4] + 20 * S, headline="Apple recalls chargers", id=50)])
        deployment.start(strategy_cls=NewsProbe)
        wait_for(lambda: server.news_connected() == 1, what="the news stream again")
        deployment.push(deployment.live[5:7])
        deployment.stop()
    finally:
        if deployment.thread is not None and deployment.thread.is_alive():
            deployment.stop()
    journal = Journal(deployment.journal_url)
    rows = journal.news()
    journal.close()
    assert sorted((r["article_id"], r["symbol"], r["source"]) for r in rows) == [
        ("1", "AAPL", "stream"), ("1", "JPM", "stream"), ("50", "AAPL", "rest")]
    first, second = NewsProbe.sessions
    assert at(first, t[3]) == 1 and at(second, t[3]) == 1  # the streamed one, counted alike after the restart
    assert at(second, t[5]) == 1  # the missed one, from its created_at


def test_a_replay_with_a_news_file_computes_the_backtests_sentiment_features(tmp_path):
    """``live --replay`` with ``data.news`` (the live path: live feeds, live broker, the streaming
    feature engine) reads the same headlines at the same bars as the backtest (the batch engine)."""
    from config import load_config
    from engine.backtest import backtest_cerebro
    from engine.live import run_replay
    from feeds.loader import load_universe

    news = "tests/features/data/news.csv"
    cfg = load_config(None, {"data.news": news, "backtest.progress": False, "backtest.strategy": "momentum_breakout"})
    bars = load_universe([f"data/sample/{s}_data.csv" for s in ("AAPL", "JPM", "XOM")], end="2018-12-31")
    NewsProbe.sessions.clear()
    backtest_cerebro(cfg, bars, strategy_cls=NewsProbe).run()
    run_replay(cfg, bars, strategy_cls=NewsProbe, journal_dir=tmp_path)
    batch, replayed = NewsProbe.sessions
    assert batch.seen.keys() == replayed.seen.keys()
    assert np.nansum([at(batch, when) for when in batch.seen]) >= 10  # the file's headlines of these symbols counted
    for when in batch.seen:
        assert_allclose(replayed.seen[when], batch.seen[when], rtol=1e-12, atol=1e-12, err_msg=str(when))
