"""The per-user token bucket and the RateLimit-* headers, on an injected clock."""

from __future__ import annotations

import pytest

from service.rate_limits import LimitState, SubmitRateLimiter, headers_for, slots_state


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_minute_of_tokens_then_one_every_interval() -> None:
    clock = Clock()
    limiter = SubmitRateLimiter(6, clock=clock)  # one token every 10 s

    taken = [limiter.take("u1") for _ in range(6)]
    assert all(decision.allowed for decision in taken)
    assert [decision.state.remaining for decision in taken] == [5, 4, 3, 2, 1, 0]

    refused = limiter.take("u1")
    assert not refused.allowed
    assert refused.retry_after_s == 10
    assert refused.state == LimitState(limit=6, remaining=0, reset_s=10)

    clock.now += 4
    assert limiter.take("u1").retry_after_s == 6, "the wait counts down with the refill"
    clock.now += 6
    again = limiter.take("u1")
    assert (again.allowed, again.retry_after_s, again.state.remaining) == (True, 0, 0)
    assert again.state.reset_s == 10, "none remain: the reset is the wait for the next"


def test_a_refused_request_costs_no_token() -> None:
    clock = Clock()
    limiter = SubmitRateLimiter(1, clock=clock)
    assert limiter.take("u1").allowed
    for _ in range(5):
        assert not limiter.take("u1").allowed
    clock.now += 60
    assert limiter.take("u1").allowed


def test_users_have_buckets_of_their_own() -> None:
    limiter = SubmitRateLimiter(2, clock=Clock())
    assert [limiter.take("u1").allowed for _ in range(3)] == [True, True, False]
    assert [limiter.take("u2").allowed for _ in range(3)] == [True, True, False]


def test_a_bucket_never_fills_past_its_size() -> None:
    clock = Clock()
    limiter = SubmitRateLimiter(3, clock=clock)
    limiter.take("u1")
    clock.now += 3600
    assert [limiter.take("u1").allowed for _ in range(4)] == [True, True, True, False]


def test_a_flood_of_user_ids_keeps_the_map_bounded() -> None:
    clock = Clock()
    limiter = SubmitRateLimiter(60, clock=clock, max_buckets=100)
    for _ in range(60):
        limiter.take("steady")
    for n in range(10_000):
        limiter.take(f"flood-{n}")
        assert len(limiter) <= 100

    # Full buckets were dropped first; past that, the least recently used, so a user last
    # seen long ago starts afresh (with a full bucket: leniency, never a wrong refusal).
    assert limiter.take("steady").allowed


def test_eviction_drops_full_buckets_then_the_least_recently_used() -> None:
    clock = Clock()
    limiter = SubmitRateLimiter(2, clock=clock, max_buckets=10)
    limiter.take("idle")  # full again 30 s later
    clock.now += 60
    for n in range(8):
        limiter.take(f"other-{n}")
    limiter.take("busy")
    limiter.take("busy")
    limiter.take("last")  # the eleventh: "idle" goes, being full, then "other-0", the oldest

    assert len(limiter) == 9, "evictions leave room for a batch of newcomers"
    assert not limiter.take("busy").allowed, "the busy user's empty bucket was kept"


def test_the_headers_describe_the_tightest_limit() -> None:
    rate = LimitState(limit=60, remaining=59, reset_s=0)
    slots = slots_state(limit=20, held=20, retry_after_s=30)

    assert slots == LimitState(limit=20, remaining=0, reset_s=30)
    assert headers_for(rate, slots) == {
        "RateLimit-Limit": "20",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "30",
    }
    assert headers_for(rate, slots_state(20, 3, 30))["RateLimit-Limit"] == "20"
    assert headers_for(LimitState(60, 2, 0), slots_state(20, 3, 30))["RateLimit-Limit"] == "60"
    assert headers_for(None, None) == {}
    assert headers_for(None, slots_state(20, 1, 30))["RateLimit-Reset"] == "0"


@pytest.mark.parametrize("per_minute", [0, -1])
def test_a_rate_needs_a_token_a_minute(per_minute: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SubmitRateLimiter(per_minute)
