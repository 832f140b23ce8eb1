"""Small pieces shared by every layer (errors, logging, progress): no backtrader, no broker."""
