"""What the CRM and Finan stand-ins share: a request log, faults on cue, control routes.

Tests (in process) use the state object directly; the sandbox and other processes use the
control routes, which need no token or signature: ``GET /_standin/requests``,
``GET /_standin/invoices``, ``POST /_standin/faults`` ``{"mode", "count", "delay"}`` and
``POST /_standin/reset``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, jsonify, request


@dataclass(frozen=True)
class Fault:
    mode: str
    delay: float


class StandinState:
    """A lock, a log of every API request, and a queue of faults for the next requests."""

    FAULT_MODES: tuple[str, ...] = ()

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.requests: list[dict[str, Any]] = []
        self._faults: deque[Fault] = deque()

    def fail_next(self, mode: str, count: int = 1, delay: float = 0.0) -> None:
        """Make the next ``count`` API requests fail as ``mode`` (one of FAULT_MODES)."""
        if mode not in self.FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; one of {', '.join(self.FAULT_MODES)}")
        if count < 1 or delay < 0:
            raise ValueError("count must be at least 1 and delay not negative")
        with self.lock:
            self._faults.extend(Fault(mode, float(delay)) for _ in range(count))

    def pending_faults(self) -> list[str]:
        with self.lock:
            return [fault.mode for fault in self._faults]

    def take_fault(self) -> Fault | None:
        with self.lock:
            return self._faults.popleft() if self._faults else None

    def log(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append(entry)

    def requests_snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(entry) for entry in self.requests]

    def reset(self) -> None:
        """Forget the request log and pending faults (subclasses forget their data too)."""
        with self.lock:
            self.requests.clear()
            self._faults.clear()

    def invoices_view(self) -> dict[str, Any]:
        """What ``GET /_standin/invoices`` shows."""
        raise NotImplementedError


def add_control_routes(app: Flask, state: StandinState) -> None:
    @app.get("/_standin/requests")
    def standin_requests() -> Response:
        return jsonify({"requests": state.requests_snapshot()})

    @app.get("/_standin/invoices")
    def standin_invoices() -> Response:
        with state.lock:
            return jsonify(state.invoices_view())

    @app.post("/_standin/faults")
    def standin_faults() -> Response | tuple[Response, int]:
        spec = request.get_json(silent=True) or {}
        try:
            state.fail_next(
                str(spec.get("mode")), int(spec.get("count", 1)), float(spec.get("delay", 0.0))
            )
        except (TypeError, ValueError) as exc:
            return jsonify({"error": str(exc)}), 400
        return jsonify({"pending": state.pending_faults()})

    @app.post("/_standin/reset")
    def standin_reset() -> Response:
        state.reset()
        return jsonify({"reset": True})
