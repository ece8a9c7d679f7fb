"""``bridge worker``'s own ``/metrics``: every Finan call its work horses make, counted.

RQ's worker forks a work horse for each job, and a counter incremented in a horse would die
with it. So a worker that serves metrics (``BRIDGE_WORKER_METRICS_PORT``) runs
prometheus-client's multiprocess mode (``bridge.observability.metrics``) in a directory of
its own: each process, the worker and each horse, writes its counters to files named by
its pid, and a scrape adds up every file. The directory is private to the worker process
(two workers on one machine, or a web service beside them, never share it), made at start
and removed at exit, so a restarted worker starts its counters from 0 as any restarted
process does.

A horse's files would pile up, one set per job ever run. So after each job the worker
folds the files of its finished horses into one file per kind (``counter_horses.db``, ...)
and deletes them. Folding and scraping take the same lock: a scrape never sees a horse's
counts twice, nor misses them.

This module imports ``prometheus_client`` only inside its functions:
``use_private_directory`` must run before anything imports it (prometheus-client picks its
mode once, at import).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# The kinds whose values add up across processes; their dead processes' files are folded.
ADDITIVE_KINDS = ("counter", "histogram", "summary")
FOLDED = "horses"


def use_private_directory() -> Path:
    """Put this process (and what it forks) in multiprocess mode, in a new directory of its
    own, removed when the process exits. Under ``PROMETHEUS_MULTIPROC_DIR`` when that is set
    (its files are not mixed with the ones already there), else in the temporary directory.
    """
    if "prometheus_client.values" in sys.modules:
        raise RuntimeError(
            "prometheus_client was imported before the worker chose its metrics directory"
        )
    parent = os.environ.get(MULTIPROC_DIR_VARIABLE) or None
    directory = Path(tempfile.mkdtemp(prefix="bridge-worker-metrics-", dir=parent))
    os.environ[MULTIPROC_DIR_VARIABLE] = str(directory)
    # A horse leaves with os._exit, which runs no atexit hook: only the worker removes it.
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkerMetrics:
    """The worker's metrics directory: folded after each job, read by each scrape."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        self._folded: dict[str, Any] = {}  # kind -> the MmapedDict of its folded file

    def fold_finished_horses(self) -> int:
        """Add the counts of every finished process's files into the folded files, then
        delete them; the number of files folded. Called by the worker after each job."""
        from prometheus_client import multiprocess
        from prometheus_client.mmap_dict import MmapedDict

        folded = 0
        with self._lock:
            for path in sorted(self._directory.glob("*.db")):
                owner = path.stem.rsplit("_", 1)[-1]
                if not owner.isdigit() or int(owner) == os.getpid() or _alive(int(owner)):
                    continue  # the folded files, this process's, a live one's
                kind = path.stem.split("_", 1)[0]
                if kind == "gauge":
                    multiprocess.mark_process_dead(int(owner), str(self._directory))
                    continue
                if kind not in ADDITIVE_KINDS:
                    continue
                into = self._folded.get(kind)
                if into is None:
                    into = MmapedDict(str(self._directory / f"{kind}_{FOLDED}.db"))
                    self._folded[kind] = into
                for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(path)):
                    total, _ = into.read_value(key)
                    into.write_value(key, total + value, timestamp)
                path.unlink()
                folded += 1
        return folded

    def collect(self) -> Iterator[Any]:
        """Every process's counts, added up (a ``Collector``: what a scrape shows)."""
        from prometheus_client.multiprocess import MultiProcessCollector

        with self._lock:
            metrics = list(MultiProcessCollector(None, path=str(self._directory)).collect())
        return iter(metrics)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 (pods: all)
        """Serve ``GET /metrics`` on ``port`` from a thread of this process."""
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        start_http_server(port, addr=address, registry=registry)
        log.info("worker metrics served on port %d at /metrics", port)
