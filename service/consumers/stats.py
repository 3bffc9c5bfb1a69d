"""Counters the consumer keeps about itself, for tests, readiness and metrics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ConsumerStats:
    """Monotonic counters and the peak number of jobs run at once."""

    receives: int = 0
    empty_receives: int = 0
    receive_errors: int = 0
    received: int = 0
    acked: int = 0
    retried: int = 0
    crashed: int = 0
    dead_lettered: int = 0
    deleted: int = 0
    delete_errors: int = 0
    extended: int = 0
    extend_errors: int = 0
    released: int = 0
    peak_in_flight: int = 0
