"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright by its path):
every view of a replay run and of a live session in progress draws, a new bar appears without a
reload, the stale badge appears when the bars stop, and a control needs the token. A screenshot of
each view is saved in the test's folder (``tmp_path``)."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time

import pandas as pd
import pytest
import uvicorn

from brokers.alpaca.local_server import AlpacaTestServer
from brokers.journal import Journal
from config import load_config
from dashboard.app import Tokens, create_app
from dashboard.sources import LiveJournal, RunFolder
from tests.live.harness import Deployment, wait_for

pytestmark = pytest.mark.slow
VIEWS = ["overview", "positions", "orders", "risk", "models", "chart", "logs"]
CONTROL_TOKEN = "browser-control-token-7c1"


def chromium_path() -> str:
    path = os.environ.get("TRADER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium on this machine (.ci/run installs Debian's package)")
        pytest.skip("no chromium: apt-get install chromium (or set TRADER_CHROMIUM)")
    return path


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    opened.problems = []  # console errors and page errors (a CSP violation is one)
    opened.on("console", lambda m: opened.problems.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda e: opened.problems.append(str(e)))
    yield opened
    context.close()


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app):
    """The app on a real uvicorn server (a thread), its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="the dashboard server")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def visit(page, url: str, view: str, shots) -> None:
    page.goto(f"{url}/{'' if view == 'overview' else view}")
    page.wait_for_selector("body[data-loaded]", timeout=20_000)
    page.wait_for_timeout(300)  # plotly's drawing settles
    page.screenshot(path=str(shots / f"{view}.png"), full_page=True)


def table_rows(page, selector: str) -> list[list[str]]:
    return [[cell.inner_text() for cell in row.query_selector_all("td")]
            for row in page.query_selector_all(f"{selector} tbody tr")]


def drawn_paths(page, selector: str) -> int:
    """Plotly's drawn traces with a path: a chart that has drawn."""
    return sum(1 for p in page.query_selector_all(f"{selector} .main-svg path.js-line, {selector} .main-svg .point path,"
                                                   f" {selector} .main-svg path.js-fill")
               if (p.get_attribute("d") or "").strip() not in ("", "M0,0Z"))


def test_every_view_of_a_replay_run_draws(replay_run, page, tmp_path):
    cfg = load_config(None)
    with serving(create_app(RunFolder(replay_run, cfg), cfg, tokens=Tokens())) as url:
        for view in VIEWS:
            visit(page, url, view, tmp_path)
            if view == "overview":
                assert drawn_paths(page, "#equity-chart") >= 2  # equity, buy and hold (and drawdown)
                assert len(table_rows(page, "#targets-table")) == len(cfg.report.blueprint_targets)
            if view == "orders":
                assert len(table_rows(page, "#orders-table")) == min(200, len(pd.read_csv(replay_run / "orders.csv")))
            if view == "chart":
                assert page.query_selector("#symbol-chart .main-svg") is not None
    assert page.problems == []
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(f"{v}.png" for v in VIEWS)


@pytest.fixture
def server():
    with AlpacaTestServer(commission_bps=1.0, slippage_bps=5.0) as srv:
        yield srv


def journal_positions(url: str) -> list[tuple[str, str]]:
    journal = Journal(url)
    positions = pd.DataFrame(journal.table("positions"))
    equity = pd.DataFrame(journal.table("equity"))
    journal.close()
    last = equity["bar_datetime"].max()
    held = positions[positions["bar_datetime"] == last] if len(positions) else positions
    return sorted((row.symbol, f"{row.qty:,.0f}") for row in held.itertuples())


def test_a_live_session_in_progress(server, tmp_path, page):
    (tmp_path / "live").mkdir()
    deployment = Deployment(server, tmp_path / "live", history=40, live=30)
    cfg = load_config(None, {"dashboard.stale_after_seconds": 3.0, "dashboard.refresh_seconds": 0.4})
    shots = tmp_path / "shots"
    shots.mkdir()
    deployment.start()
    try:
        pushed = 8
        deployment.push(deployment.live[:pushed])
        while not journal_positions(deployment.journal_url) and pushed < 20:  # until the session holds some
            deployment.push(deployment.live[pushed:pushed + 1])
            pushed += 1
        assert journal_positions(deployment.journal_url), "the session never held a position"
        source = LiveJournal(deployment.journal_url, cfg, state_dir=deployment.state)
        with serving(create_app(source, cfg, tokens=Tokens(control=CONTROL_TOKEN))) as url:
            page.goto(f"{url}/?token={CONTROL_TOKEN}")  # the token moves into a cookie
            assert "token=" not in page.url
            for view in VIEWS:
                visit(page, url, view, shots)
                if view == "overview":
                    assert drawn_paths(page, "#equity-chart") >= 1
                if view == "positions":
                    shown = sorted((row[0], row[1]) for row in table_rows(page, "#positions-table"))
                    assert shown and shown == journal_positions(deployment.journal_url)

            # a new bar appears without reloading the page
            visit(page, url, "overview", shots)
            page.evaluate("window.sameDocument = true")
            deployment.push(deployment.live[pushed:pushed + 1])
            new_bar = max(b.datetime for b in deployment.live[pushed].values()).isoformat()
            page.wait_for_selector(f'body[data-last-bar="{new_bar}"]', timeout=10_000)
            assert page.evaluate("window.sameDocument") is True
            assert not page.is_visible("#stale-badge")

            # the bars stop: the page turns stale on its own
            page.wait_for_selector("#stale-badge", state="visible", timeout=15_000)
            assert "stale" in page.get_attribute("#panel", "class")
            page.screenshot(path=str(shots / "stale.png"), full_page=True)

            # a control without the token is refused; with it, it reaches the session at its next bar
            anonymous = page.context.browser.new_context()
            refused = anonymous.request.post(f"{url}/api/controls", data={"action": "pause"},
                                             headers={"X-Dashboard-Control": "1"})
            assert refused.status == 401
            anonymous.close()
            page.click('button[data-action="pause"]')
            page.wait_for_selector("#control-result:has-text('asked')", timeout=5_000)
            journal = Journal(deployment.journal_url)
            asked = journal.controls(limit=1)[0]
            assert asked["action"] == "pause" and asked["status"] == "pending"
            deployment.push(deployment.live[pushed + 1:pushed + 2])
            wait_for(lambda: journal.controls(limit=1)[0]["status"] != "pending", what="the session to resolve the pause")
            assert journal.controls(limit=1)[0]["status"] == "applied"
            page.wait_for_selector("#controls-table td:has-text('applied')", timeout=5_000)
            journal.close()
        source.close()
    finally:
        deployment.stop()
    assert page.problems == [] or all("401" in p for p in page.problems)


def session_state(url: str) -> str | None:
    journal = Journal(url)
    rows = journal.session_status()
    journal.close()
    return rows[0]["status"].get("state") if rows else None


def kill_switch_tripped(url: str, name: str) -> bool:
    """From the state saved after the last bar (the published status lags up to a second)."""
    journal = Journal(url)
    saved = journal.load_state(name)
    journal.close()
    return bool(saved) and saved[1]["strategy"]["risk"]["kill_switch"]["tripped"]


def test_a_kill_switch_reset_from_the_page_takes_effect_at_the_next_bar(server, tmp_path, page):
    from tests.live.gated import GatedBreakout

    (tmp_path / "live").mkdir()
    deployment = Deployment(server, tmp_path / "live", history=40, live=30)
    text = deployment.config_path.read_text()
    deployment.config_path.write_text(text.replace("[risk]\n", "[risk]\nmax_drawdown = 0.005\n", 1))
    cfg = load_config(None, {"dashboard.refresh_seconds": 0.4})
    deployment.start(strategy_cls=GatedBreakout)
    try:
        pushed = 0
        while not kill_switch_tripped(deployment.journal_url, deployment.runner.name) and pushed < 28:
            deployment.push(deployment.live[pushed:pushed + 1])
            pushed += 1
        assert kill_switch_tripped(deployment.journal_url, deployment.runner.name), "the kill switch never tripped"
        wait_for(lambda: session_state(deployment.journal_url) == "halted_kill_switch", what="the published state")
        source = LiveJournal(deployment.journal_url, cfg, state_dir=deployment.state)
        with serving(create_app(source, cfg, tokens=Tokens(control=CONTROL_TOKEN))) as url:
            page.goto(f"{url}/risk?token={CONTROL_TOKEN}")
            page.wait_for_selector("#state.state-halted_kill_switch", timeout=10_000)
            page.click('button[data-action="reset_kill_switch"]')  # without the typed confirmation
            page.wait_for_selector("#control-result:has-text('refused')", timeout=5_000)
            page.fill("#reset-confirm", "RESET")
            page.click('button[data-action="reset_kill_switch"]')
            page.wait_for_selector("#control-result:has-text('asked')", timeout=5_000)
            journal = Journal(deployment.journal_url)
            assert [c["status"] for c in journal.controls()] == ["pending"]
            deployment.push(deployment.live[pushed:pushed + 1])
            next_bar = max(b.datetime for b in deployment.live[pushed].values())
            control = journal.controls()[0]
            assert control["status"] == "applied" and control["bar_datetime"] == next_bar
            assert "kill switch reset" in control["message"]
            assert "reset_kill_switch by dashboard 127.0.0.1: applied" in journal.events("control")[-1]["message"]
            _, state = journal.load_state(deployment.runner.name)
            assert state["strategy"]["risk"]["kill_switch"]["tripped"] is False
            journal.close()
            page.wait_for_selector("#controls-table td:has-text('applied')", timeout=5_000)
            page.screenshot(path=str(tmp_path / "reset.png"), full_page=True)
        source.close()
    finally:
        deployment.stop()
