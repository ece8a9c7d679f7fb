"""The side-by-side benchmark: ``python -m bench`` (see docs/performance.md).

It runs, on this machine and in one go, a Flask hello-world (H), a naive hand-written
issue chain (N, ``bench.naive_app``), and the bridge's issue and replay paths (B1, B2)
under the same gunicorn settings, against one fast Finan stand-in and a dedicated Redis,
in alternating rounds, and reports medians and ratios.
"""
