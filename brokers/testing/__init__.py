"""Test doubles that speak real protocols (used by the tests and the latency benchmark)."""
