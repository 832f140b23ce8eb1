"""Alpaca's rules the live broker follows (``brokers.venue.VenueCapabilities``); the simulated venue of a
replay declares the same, since it stands in for Alpaca."""
from brokers.venue import VenueCapabilities

ALPACA_CAPABILITIES = VenueCapabilities(
    name="Alpaca",
    # an OCO's stop-loss is a stop or stop-limit: Alpaca's OCO orders take no trailing stop
    oco_stop_types=frozenset({"stop", "stop_limit"}),
    # Alpaca holds the shares of an open sell ("insufficient qty available" for a second one)
    exits_hold_shares=True,
    # its "insufficient buying power" (not its "insufficient qty available")
    margin_words=("insufficient", "buying power"),
)
