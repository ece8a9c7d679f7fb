"""Logs as JSON lines and Prometheus metrics, for every process (web, worker, CLI).

May import ``bridge.store``, the base modules and ``schemas``; never Flask or RQ at import
time of ``logs`` or ``metrics``.
"""
