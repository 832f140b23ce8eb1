"""The Alpaca adapter, one module per job (NautilusTrader's adapter layout):

- ``credentials``: the API keys (environment or ``.env``), redacted from logs;
- ``store``: the REST clients and websocket streams (alpaca-py), retries and errors;
- ``execution``: :class:`AlpacaVenue`, the ``brokers.venue.Venue`` the live broker sends orders to;
- ``capabilities``: Alpaca's own rules the live broker follows (``brokers.venue.VenueCapabilities``);
- ``data``: the bar source (history for the warm-up, then the live bar stream);
- ``calendar``: the market's sessions (exchange_calendars);
- ``local_server``: a local Alpaca-compatible server for tests and benchmarks.
"""
