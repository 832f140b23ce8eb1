"""The ranked plan ``ml_rank`` on real sample data: the top-k dropout hysteresis on scores we control,
the exposure it keeps, the risk gates, delistings, its records and decision log, its live state and its
config's errors. The walk-forward is trained once on a small model config (LightGBM only, six
symbols); the other runs reuse it (``walk_forward=``), with its scores replaced where a test needs to
know the ranking."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from common.errors import ConfigError
from config import load_config
from engine.backtest import run_backtest
from feeds.loader import load_universe

pytestmark = pytest.mark.slow

SYMBOLS = ["AAPL", "JPM", "KO", "MSFT", "NVDA", "XOM"]
SMALL = {
    "backtest.progress": False, "backtest.strategy": "ml_rank",
    "models.base_models": ["lightgbm"], "models.threads": 1,
    "models.train_bars": 126, "models.retrain_every": 63,
    "models.lightgbm.n_estimators": 40, "models.search.draws": 2, "models.search.folds": 2,
    "ml_rank.top_k": 2, "ml_rank.keep_k": 4,
}
# where a test is about the selection or the sizing, not the risk score: nothing rejected, delayed or halted
LENIENT = {"risk.max_correlation": 1.0, "risk.correlation_delay_above": 1.0, "risk.approve_below": 1.0,
           "risk.var_limit": 1.0, "risk.max_sector_weight": 1.0, "risk.max_position_weight": 0.5,
           "risk.max_drawdown": 1.0, "risk.daily_loss_limit": 1.0, "ml_rank.stops": False}


def rank_cfg(**extra):
    return load_config(overrides={**SMALL, **extra})


@pytest.fixture(scope="module")
def bars():
    return load_universe([f"data/sample/{s}_data.csv" for s in SYMBOLS])


@pytest.fixture(scope="module")
def default_run(bars):
    """``ml_rank`` with the default [risk] and stops, and three configurations tried by hand."""
    return run_backtest(rank_cfg(**{"report.configurations_tried": 3}), bars)


def with_scores(walk, cfg, score_of):
    """The walk-forward's predictions with the decision horizon's expected return replaced by
    ``score_of(time, symbol)``: the ranking a test wants."""
    result, data = walk
    p = result.predictions
    times = pd.DatetimeIndex(data.times)[p.bars]
    symbols = np.asarray(data.symbols, dtype=object)[p.symbols]
    expected = p.expected_return.copy()
    expected[:, cfg.models.horizons.index(cfg.models.decision_horizon)] = [
        score_of(t, s) for t, s in zip(times, symbols)]
    return dataclasses.replace(result, predictions=dataclasses.replace(p, expected_return=expected)), data


def by_order(*phases):
    """score_of for phases (first day, symbols best first): 0.01 x places from the bottom."""
    def score_of(time, symbol):
        order = [names for start, names in phases if time >= pd.Timestamp(start)][-1]
        return 0.01 * (len(order) - order.index(symbol))
    return score_of


def rebalances(result) -> list[pd.Timestamp]:
    return [pd.Timestamp(line[:10]) for line in result.strategy.decision_lines if " REBALANCE " in line]


def orders_at(result, when) -> set:
    orders = result.records.orders
    rows = orders[pd.to_datetime(orders["datetime"]) == when]
    return set(zip(rows["symbol"], rows["side"], rows["reason"]))


def test_a_holding_within_keep_k_is_kept_one_beyond_is_sold_and_the_top_k_are_bought(bars, default_run):
    cfg = rank_cfg(**LENIENT)
    score_of = by_order(("2000-01-01", ["AAPL", "JPM", "KO", "MSFT", "NVDA", "XOM"]),
                        ("2016-01-04", ["KO", "XOM", "JPM", "NVDA", "MSFT", "AAPL"]),
                        ("2017-01-03", ["MSFT", "NVDA", "XOM", "KO", "AAPL", "JPM"]))
    result = run_backtest(cfg, bars, walk_forward=with_scores(default_run.strategy.walk_forward(), cfg, score_of))
    when = rebalances(result)
    first = when[0]
    assert orders_at(result, first) == {("AAPL", "buy", "ml_rank"), ("JPM", "buy", "ml_rank")}
    # top_k 2, keep_k 4. From 2016: JPM ranks 3rd (kept), AAPL 6th (sold); one slot, to KO (1st), not XOM (2nd)
    b = next(t for t in when if t >= pd.Timestamp("2016-01-04"))
    assert orders_at(result, b) == {("AAPL", "sell", "rank"), ("KO", "buy", "ml_rank")}
    lines = [line for line in result.strategy.decision_lines if line.startswith(f"{b:%Y-%m-%d}")]
    assert any("AAPL SELL rank 6 score 0.0100" in line for line in lines)
    assert any("KO BUY rank 1 score 0.0600" in line for line in lines)
    assert any("REBALANCE ranked 6: held 2, kept 1, sold 1, bought 1, rejected 0, delayed 0" in line for line in lines)
    # From 2017: KO ranks 4th, the last rank kept; JPM 6th, sold; its slot to MSFT (1st)
    c = next(t for t in when if t >= pd.Timestamp("2017-01-03"))
    assert orders_at(result, c) == {("JPM", "sell", "rank"), ("MSFT", "buy", "ml_rank")}
    # between those rebalances nothing trades, and the holdings are the top_k chosen
    orders = result.records.orders
    created = pd.to_datetime(orders["datetime"])
    assert set(created) == {first, b, c}
    positions = result.records.positions
    held = positions.groupby(pd.to_datetime(positions["datetime"]))["symbol"].apply(frozenset)
    assert set(held[(held.index > b) & (held.index <= c)]) == {frozenset({"JPM", "KO"})}
    assert set(held[held.index > c]) == {frozenset({"KO", "MSFT"})}
    trades = result.records.trades
    assert set(trades["exit_reason"]) == {"rank", "end"}


@pytest.mark.parametrize("weights", ["equal", "mean_variance"])
def test_exposure_stays_near_the_target_after_the_first_rebalance(bars, default_run, weights):
    cfg = rank_cfg(**{**LENIENT, "ml_rank.top_k": 4, "ml_rank.keep_k": 5, "risk.max_position_weight": 0.3,
                      "ml_rank.weights": weights})
    result = run_backtest(cfg, bars, walk_forward=default_run.strategy.walk_forward())
    equity = result.records.equity.set_index(pd.to_datetime(result.records.equity["datetime"]))["equity"]
    positions = result.records.positions
    value = positions.groupby(pd.to_datetime(positions["datetime"]))["value"].sum()
    invested = (value.reindex(equity.index).fillna(0.0) / equity)[value.index.min():]
    assert invested.max() <= 1.0
    assert invested.mean() > 0.9
    if weights == "equal":   # 4 names at 1/4 each of 99% (ml_rank.cash_buffer)
        assert invested.median() > 0.97
    # no holding is added to or trimmed: one buy and at most one sell per trade
    orders = result.records.orders
    filled = orders[orders["status"] == "completed"]
    assert len(filled[filled["side"] == "buy"]) == len(result.records.trades)


def test_the_default_run_obeys_the_plan(default_run):
    cfg, m = default_run.cfg, default_run.metrics
    risk, plan = cfg.risk, cfg.ml_rank
    # the deflated Sharpe counts the search's configurations, the one used and the three tried by hand
    assert m["n_trials"] == m["walk_forward"]["n_configurations"] + 1 + 3
    assert m["excess_return"] == pytest.approx(m["total_return"] - m["buy_and_hold"]["total_return"])
    assert m["tracking_error"] > 0 and m["information_ratio"] is not None
    lo, hi = m["information_ratio_ci_95"]
    assert lo < m["information_ratio"] < hi
    trades = default_run.records.trades
    assert len(trades) >= 10
    assert set(trades["exit_reason"]) <= {"stop", "rank", "kill_switch", "end"}
    assert trades["target"].isna().all() and trades["initial_stop"].notna().all()   # a stop, no take-profit
    positions = default_run.records.positions
    assert positions.groupby("datetime")["symbol"].nunique().max() <= plan.top_k
    # a rebalance every rebalance_bars bars of the run
    calendar = pd.DatetimeIndex(pd.to_datetime(default_run.records.equity["datetime"]))
    bars_between = np.diff(calendar.get_indexer(rebalances(default_run)))
    assert len(bars_between) > 100 and (bars_between == plan.rebalance_bars).all()
    lines = pd.Series(default_run.strategy.decision_lines)
    assert lines.str.contains(r" BUY rank \d+ score -?[\d.]+ size \d+").any()
    assert lines.str.contains(r" rejected score ").any()                   # the risk score applies
    # each entry's order is its BUY line's, with the initial stop 0.5-5% below the signal close
    buys = lines.str.extract(r"^(\S+) \S+ (\S+) BUY rank \d+ score \S+ size (\d+) entry ([\d.]+) stop ([\d.]+)")
    buys = buys.dropna()
    orders = default_run.records.orders
    entries = orders[orders["reason"] == "ml_rank"]
    assert sorted(zip(buys[0], buys[1], buys[2].astype(int))) == sorted(
        zip(entries["datetime"].astype(str).str[:10], entries["symbol"], entries["size"]))
    stop_pct = 1 - buys[4].astype(float) / buys[3].astype(float)
    assert stop_pct.between(risk.stop_min - 1e-3, risk.stop_max + 1e-3).all()


def test_kill_switch_flattens_and_halts(bars, default_run):
    cfg = rank_cfg(**{"risk.max_drawdown": 0.04})
    result = run_backtest(cfg, bars, walk_forward=default_run.strategy.walk_forward())
    halted = result.strategy.halted
    assert halted is not None and "below its peak" in halted["reason"]
    when = pd.Timestamp(halted["datetime"])
    trades = result.records.trades
    open_then = trades[(pd.to_datetime(trades["entry_datetime"]) <= when)
                       & (pd.to_datetime(trades["exit_datetime"]) > when)]
    assert len(open_then) and (open_then["exit_reason"] == "kill_switch").all()
    assert (pd.to_datetime(trades["entry_datetime"]) <= when + pd.Timedelta(days=4)).all()
    assert not any(pd.Timestamp(line[:10]) > when for line in result.strategy.decision_lines if " BUY " in line)
    assert any("KILL SWITCH" in line for line in result.strategy.decision_lines)
    # live restarts: the gates and the rebalance schedule survive a JSON round trip
    strategy = result.strategy
    state = json.loads(json.dumps(strategy.export_state()))
    assert state["since_rebalance"] == strategy.since_rebalance
    strategy.since_rebalance = None
    strategy.import_state(state)
    assert strategy.halted == halted and strategy.since_rebalance == state["since_rebalance"]


def test_a_delisted_holding_is_closed_at_its_last_bar_and_never_bought_there(bars, default_run):
    last = pd.Timestamp("2016-06-30")
    cut = dict(bars, XOM=bars["XOM"].loc[:last])
    cfg = rank_cfg(**LENIENT)
    walk, data = with_scores(default_run.strategy.walk_forward(), cfg,
                             by_order(("2000-01-01", ["XOM", "AAPL", "JPM", "KO", "MSFT", "NVDA"])))
    times = pd.DatetimeIndex(data.times)[walk.predictions.bars]
    xom = data.symbols.index("XOM")
    keep = ~((walk.predictions.symbols == xom) & (times > last))    # no prediction once its data ended
    walk = dataclasses.replace(walk, predictions=walk.predictions.take(np.flatnonzero(keep)))
    result = run_backtest(cfg, cut, walk_forward=(walk, data))
    trades = result.records.trades.set_index("symbol")
    assert trades.loc["XOM", "exit_reason"] == "delisted"
    assert pd.Timestamp(trades.loc["XOM", "exit_datetime"]) == last
    orders = result.records.orders
    xom_orders = orders[orders["symbol"] == "XOM"]
    assert list(xom_orders["side"]) == ["buy", "sell"]           # bought once, closed once: no re-entry at the end
    # top_k 2: XOM and AAPL were held; at the next rebalance XOM's slot goes to the next ranked, JPM
    after = next(t for t in rebalances(result) if t > last)
    assert orders_at(result, after) == {("JPM", "buy", "ml_rank")}


def test_config_errors_name_the_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"ml_rank\.keep_k \(10\) is below ml_rank\.top_k \(20\)"):
        load_config(overrides={"ml_rank.keep_k": 10})
    with pytest.raises(ConfigError, match=r"ml_rank\.top_k \(25\) is above risk\.max_positions \(20\)"):
        load_config(overrides={"backtest.strategy": "ml_rank", "ml_rank.top_k": 25, "ml_rank.keep_k": 30})
    with pytest.raises(ConfigError, match=r"ml_rank\.target_exposure \(1\) is above risk\.max_total_weight \(0\.8\)"):
        load_config(overrides={"backtest.strategy": "ml_rank", "risk.max_total_weight": 0.8})
    # risk.max_positions below ml_rank.top_k is fine for another strategy
    assert load_config(overrides={"risk.max_positions": 10}).risk.max_positions == 10
    with pytest.raises(ConfigError, match=r"ml_rank\.weights: "):
        load_config(overrides={"ml_rank.weights": "inverse_volatility"})
    with pytest.raises(ConfigError, match=r"ml_rank\.topk: unknown key \(did you mean top_k\?\)"):
        path = tmp_path / "typo.toml"
        path.write_text("[ml_rank]\ntopk = 5\n")
        load_config(path)


def test_momentum_score_ranks_by_the_baseline_in_the_same_plan(bars, default_run):
    """``ml_rank.score = "momentum_12_1"``: the same plan on the models' walk-forward, ranked by 12-1
    momentum; every BUY's score is that symbol's momentum at the bar."""
    from models.factor_evaluation import momentum_12_1

    walk = default_run.strategy.walk_forward()
    cfg = rank_cfg(**LENIENT, **{"ml_rank.score": "momentum_12_1"})
    result = run_backtest(cfg, bars, walk_forward=walk)
    _, data = walk
    grid = momentum_12_1(data.close)
    buys = [line.split() for line in result.strategy.decision_lines if " BUY " in line]
    assert buys
    times = pd.DatetimeIndex(data.times)
    for words in buys:
        t = times.get_loc(pd.Timestamp(words[0]))
        score = float(words[words.index("score") + 1])
        assert score == pytest.approx(grid[t, list(data.symbols).index(words[2])], abs=1e-4)


@pytest.mark.parametrize("strategy", ["ml", "ml_equal_weight"])
def test_a_return_plan_refuses_rank_labels(bars, strategy):
    from common.errors import UserError

    cfg = rank_cfg(**{"backtest.strategy": strategy, "models.labels.kind": "cross_sectional_rank"})
    with pytest.raises(UserError, match="ml_rank"):
        run_backtest(cfg, bars)


def test_one_score_for_every_symbol_trades_nothing(bars, default_run):
    """A flat ensemble (the stacking zeroed every base model's weight) has no opinion on which
    stock: the rebalance keeps what is held and buys nothing, rather than ranking ties by name."""
    cfg = rank_cfg(**LENIENT)
    walk = with_scores(default_run.strategy.walk_forward(), cfg, lambda t, s: 0.001)
    result = run_backtest(cfg, bars, walk_forward=walk)
    lines = result.strategy.decision_lines
    assert lines and all("REBALANCE skipped" in line and "no cross-sectional opinion" in line for line in lines)
    assert result.records.orders.empty
