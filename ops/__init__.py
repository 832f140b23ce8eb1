"""Operations: what watches a live session (metrics, alerts, the daily live-versus-replay check)."""
