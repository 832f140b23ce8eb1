"""Calendar features from the bar's timestamp."""
from __future__ import annotations

from features.registry import feature
from features.sources import CALENDAR_FIELDS


@feature("{field}", group="calendar", grid={"field": CALENDAR_FIELDS})
def calendar_field(b, field):
    """The bar's day_of_week (Monday 0), day_of_month, month (1-12), days_to_month_end (calendar
    days to the month's last day) or time_of_day (hours; 0 on daily bars)."""
    return b.calendar(field)
