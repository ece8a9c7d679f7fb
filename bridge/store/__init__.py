"""What the bridge keeps in Redis: the connection and key names, records, idempotency
keys, the queue, the per-invoice lock, encryption at rest and the embedded server.

May import only the base modules (``bridge.config``, ``bridge.errors``) and ``schemas``.
"""
