"""Per-user submission rates, and the ``RateLimit-*`` headers of every analyze answer.

:class:`SubmitRateLimiter` is a token bucket per user, in this process's memory: it holds
``per_minute`` tokens and refills at ``per_minute`` a minute, and each submission takes
one. So a user may send a minute's worth at once, then one every ``60 / per_minute``
seconds. Each replica keeps its own buckets, so N replicas admit up to N times the rate.

The headers are the three fields of ``draft-ietf-httpapi-ratelimit-headers-07``:
``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset`` (later drafts folded
them into ``RateLimit`` and ``RateLimit-Policy``). With both the rate and the active-job
quota on, they describe the tighter of the two at this moment: the one with fewer
submissions remaining. ``RateLimit-Reset`` is the seconds until that limit admits another
submission: 0 while some remain; when none do, the ``Retry-After`` a refusal would give
(for the quota that is a hint, as nobody knows when a job will end).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

LIMIT, REMAINING, RESET = "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"
DRAFT = "draft-ietf-httpapi-ratelimit-headers-07"
MAX_BUCKETS = 10_000
"""Users whose buckets one process keeps; past it, full buckets go, then the least recently
used (a user whose bucket went starts again with a full one)."""
KEEP_AFTER_EVICTION = 0.9
"""The share of :data:`MAX_BUCKETS` left after evicting, so evictions come in batches."""


@dataclass(frozen=True, slots=True)
class LimitState:
    """One limit as the headers describe it."""

    limit: int
    remaining: int
    reset_s: int


def headers_for(*states: LimitState | None) -> dict[str, str]:
    """The ``RateLimit-*`` headers of the tightest of ``states`` (fewest remaining, then
    the later reset); none when no limit is on."""
    present = [state for state in states if state is not None]
    if not present:
        return {}
    tightest = min(present, key=lambda state: (state.remaining, -state.reset_s))
    return {
        LIMIT: str(tightest.limit),
        REMAINING: str(tightest.remaining),
        RESET: str(tightest.reset_s),
    }


def slots_state(limit: int, held: int, retry_after_s: int) -> LimitState:
    """The active-job quota as a limit: ``limit`` slots, of which ``held`` are taken."""
    remaining = max(0, limit - held)
    return LimitState(limit, remaining, 0 if remaining else retry_after_s)


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether a submission may go ahead, and the rate limit's state after it."""

    allowed: bool
    state: LimitState
    retry_after_s: int
    """Seconds until a token is free again: 0 when ``allowed``."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class SubmitRateLimiter:
    """A token bucket per user of ``per_minute`` submissions (at least 1)."""

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        if per_minute < 1 or max_buckets < 1:
            raise ValueError("a rate limit needs at least 1 a minute and room for 1 bucket")
        self.per_minute = per_minute
        self._per_s = per_minute / 60
        self._clock = clock
        self._max = max_buckets
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, user_id: str) -> RateDecision:
        """Take one of the user's tokens if there is one."""
        now = self._clock()
        bucket = self._buckets.pop(user_id, None)
        tokens = self.per_minute if bucket is None else self._refilled(bucket, now)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self._buckets[user_id] = _Bucket(tokens, now)
        if len(self._buckets) > self._max:
            self._evict(now)
        wait = 0 if tokens >= 1 else math.ceil((1 - tokens) / self._per_s)
        state = LimitState(self.per_minute, math.floor(tokens), wait)
        return RateDecision(allowed, state, 0 if allowed else wait)

    def _refilled(self, bucket: _Bucket, now: float) -> float:
        return min(float(self.per_minute), bucket.tokens + (now - bucket.at) * self._per_s)

    def _evict(self, now: float) -> None:
        # A full bucket is the same as none, so those go first, at no cost to anyone.
        for user_id, bucket in list(self._buckets.items()):
            if self._refilled(bucket, now) >= self.per_minute:
                del self._buckets[user_id]
        keep = max(1, int(self._max * KEEP_AFTER_EVICTION))
        while len(self._buckets) > keep:
            self._buckets.popitem(last=False)
