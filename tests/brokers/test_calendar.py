"""Exchange time from UTC, as the bars carry it: naive, right across the daylight-saving changes."""
import datetime as dt

import pandas as pd
import pytest

from brokers.alpaca.calendar import MarketCalendar


@pytest.mark.parametrize("utc", ["2026-03-08T06:59:00Z", "2026-03-08T07:00:00Z",  # 01:59 EST, then 03:00 EDT
                                 "2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z",  # 01:30 EDT, then 01:30 EST
                                 "2026-07-01T13:30:00Z"])
def test_local_time_agrees_with_pandas_across_daylight_saving(utc):
    calendar = MarketCalendar("XNYS")
    expected = pd.Timestamp(utc).tz_convert("America/New_York").tz_localize(None).to_pydatetime()
    for given in (utc, pd.Timestamp(utc), pd.Timestamp(utc).to_pydatetime()):
        local = calendar.local(given)
        assert local == expected and type(local) is dt.datetime and local.tzinfo is None


def test_local_time_needs_a_timezone():
    with pytest.raises(ValueError, match="timezone-aware"):
        MarketCalendar("24/7").local(dt.datetime(2026, 1, 2, 9, 30))
