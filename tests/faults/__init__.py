"""Fault tests: the pipeline under kill -9, broker restarts, database stops, rebalances."""
