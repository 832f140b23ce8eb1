"""Orders out: the live broker (``brokers.live``) over a venue (``brokers.venue``): Alpaca (the adapter
``brokers.alpaca``: keys, store, venue, bar source, calendar and a local test server) or the simulated
venue of a replay (``sim_venue`` on the matching engine ``simulator``, which fills as Backtrader's
BackBroker does); the journal (``journal``) and BackBroker's fill accounting (``accounting``)."""
