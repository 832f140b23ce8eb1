"""The live broker (``brokers.live.broker.LiveBroker``) in parts: ``mapping`` (Backtrader orders <->
venue requests), ``tracker`` (orders followed, notifications, fills), ``outbox`` (sending, cancels),
``reconcile`` (restart), ``sync`` (periodic sync) and ``halts`` (why new entries are held back)."""
