"""D: many identical issues for one new invoice, all at once.

The promise is docs/contract/semantics.md#concurrency.

The concurrency promise: N identical operations arriving together make exactly one Finan
call, and every caller gets the success answer or a ``409`` with ``Retry-After``. Each
caller connects first, then all send together (a barrier), so the requests really overlap.
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench.common import ISSUE_PATH


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no answer (connection error)
    retry_after: str | None


def duplicate_issues(
    base_url: str, token: str, invoice_id: int, body: bytes, callers: int = 200
) -> list[Answer]:
    """Send ``callers`` identical issues of ``invoice_id`` together; their answers."""
    parts = urlsplit(base_url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    path = ISSUE_PATH.format(invoice_id=invoice_id)
    barrier = threading.Barrier(callers)
    answers: list[Answer] = [Answer(None, None)] * callers

    def call(index: int) -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        try:
            connection.connect()
        except OSError:
            barrier.abort()
            return
        try:
            barrier.wait()
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            response.read()
            answers[index] = Answer(response.status, response.getheader("Retry-After"))
        except (OSError, http.client.HTTPException, threading.BrokenBarrierError):
            pass
        finally:
            connection.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def summarise(answers: list[Answer], finan_requests: int) -> dict[str, object]:
    """The D verdict: exactly one Finan request; every answer a 201, or a 409 to retry."""
    statuses = Counter(answer.status for answer in answers)
    conflicts_say_when = all(a.retry_after for a in answers if a.status == 409)
    ok = (
        finan_requests == 1
        and set(statuses) <= {201, 409}
        and statuses[201] >= 1
        and conflicts_say_when
    )
    return {
        "callers": len(answers),
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
        "finan_requests": finan_requests,
        "conflicts_have_retry_after": conflicts_say_when,
        "ok": ok,
    }
