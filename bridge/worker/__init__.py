"""``bridge worker``: the queue's jobs and the RQ worker that runs them.

May import ``bridge.services`` and every layer below it; nothing imports it but
``bridge.cli`` (RQ finds the jobs by their dotted names).
"""
