"""The queue's job names of version 0.2 (``bridge.jobs.sync_invoice`` and the others).

A job is stored in Redis under the dotted name of its function, and a retry may wait there
for hours; these names let a 0.3 worker run the jobs a 0.2 process queued. Nothing new is
queued under them. To be removed in 0.4 (docs/deploy.md, "Upgrading").
"""

from bridge.worker.jobs import resync_batch, sync_invoice, write_back

__all__ = ["resync_batch", "sync_invoice", "write_back"]
