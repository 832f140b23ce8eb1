"""Data in: CSV loading and validation (``feeds.loader``), Backtrader feeds (``feeds.pandas_feed``)."""
