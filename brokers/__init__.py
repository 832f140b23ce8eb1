"""Orders out: the live broker (``brokers.live_broker``) over a venue (``brokers.venue``): Alpaca
(``alpaca_store``, ``alpaca_venue``) or the simulated venue of a replay (``sim_venue`` on the matching
engine ``simulator``, which fills as Backtrader's BackBroker does); the journal (``journal``), the keys
(``secrets``), the market calendar (``calendar``), and a local Alpaca-compatible server for tests
(``testing.alpaca_server``)."""
