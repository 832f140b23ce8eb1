"""Randomized kill -9 and restart of the real live process (``tests.live.crash``): a few seeded trials
here, hundreds in ``benchmarks/crash_soak.py``. Each trial kills the process at random moments of every
kind (mid-bar, between bars, at an order's POST before and after the broker takes it, after a stop's
cancel, the broker's test hook, during the restart and its reconciliation), lets bars arrive while it
is down or reconciling, and checks: nothing POSTed twice, journal == broker, never short, positions
equal, and the backtest's orders when no restart had more than ``live.max_catchup_bars`` bars to
catch up. The seed fixes the plan of kills; where a kill lands still depends on timing."""
import pytest

from tests.live.crash import CrashTrial

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_random_kills_lose_nothing_and_send_nothing_twice(tmp_path, seed):
    result = CrashTrial(tmp_path, seed).run()
    assert result.kills, "the trial killed nothing"
    assert result.ok, f"seed {seed}, kills {result.kills}:\n" + "\n".join(result.failures)


@pytest.mark.parametrize("seed", [7, 8])
def test_random_kills_with_the_journal_on_postgresql(tmp_path, seed, postgres_url):
    result = CrashTrial(tmp_path, seed, journal_url=postgres_url).run()
    assert result.kills, "the trial killed nothing"
    assert result.ok, f"seed {seed}, kills {result.kills}:\n" + "\n".join(result.failures)
