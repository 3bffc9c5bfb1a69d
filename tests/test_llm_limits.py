"""The process-wide limiter: concurrency slots and token buckets, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from service.analysis.llm_limits import LlmLimiter


class FakeTime:
    """A clock that only moves when someone sleeps, recording every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def _limiter(time: FakeTime, **kwargs: int) -> LlmLimiter:
    kwargs.setdefault("concurrency", 100)
    return LlmLimiter(clock=time.clock, sleep=time.sleep, **kwargs)


async def test_concurrent_requests_never_exceed_the_slots() -> None:
    limiter = LlmLimiter(concurrency=3)
    gate = asyncio.Event()
    running: list[int] = []

    async def request() -> None:
        async with limiter.slot(10):
            running.append(limiter.in_flight)
            await gate.wait()

    tasks = [asyncio.create_task(request()) for _ in range(10)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert limiter.in_flight == 3
    gate.set()
    await asyncio.gather(*tasks)
    assert limiter.peak_in_flight == 3
    assert max(running) == 3
    assert (limiter.admitted, limiter.in_flight) == (10, 0)


async def test_requests_per_minute_are_admitted_at_the_configured_rate() -> None:
    time = FakeTime()
    limiter = _limiter(time, requests_per_minute=3)
    admitted_at = []
    for _ in range(9):
        (await limiter.acquire(1)).release()
        admitted_at.append(time.now)
    # A full bucket lets a minute's allowance go at once; after that one every 20 s.
    assert admitted_at[:3] == [0, 0, 0]
    assert time.sleeps == pytest.approx([20.0] * 6)
    for count, moment in enumerate(admitted_at, start=1):
        assert count <= 3 + moment / 20 + 1e-9


async def test_tokens_per_minute_wait_for_the_estimate_and_refund_the_difference() -> None:
    time = FakeTime()
    limiter = _limiter(time, tokens_per_minute=600)  # 10 tokens a second
    first = await limiter.acquire(400)
    first.record(100)  # the reply was cheaper than feared: 300 come back
    first.release()
    (await limiter.acquire(400)).release()
    assert time.sleeps == []
    (await limiter.acquire(400)).release()  # 100 left: 300 short, 30 s at 10/s
    assert time.sleeps == pytest.approx([30.0])


async def test_a_dearer_reply_than_estimated_is_charged() -> None:
    time = FakeTime()
    limiter = _limiter(time, tokens_per_minute=600)
    lease = await limiter.acquire(100)
    lease.record(600)  # the whole minute's budget
    lease.release()
    (await limiter.acquire(60)).release()
    assert time.sleeps == pytest.approx([6.0])


async def test_zero_means_unlimited() -> None:
    time = FakeTime()
    limiter = _limiter(time, requests_per_minute=0, tokens_per_minute=0)
    for _ in range(1000):
        (await limiter.acquire(1_000_000)).release()
    assert time.sleeps == []


async def test_an_estimate_above_the_whole_budget_still_gets_through() -> None:
    time = FakeTime()
    limiter = _limiter(time, tokens_per_minute=100)
    (await limiter.acquire(10_000)).release()
    (await limiter.acquire(10_000)).release()
    assert time.sleeps == pytest.approx([60.0])


async def test_a_cancelled_waiter_gives_its_slot_back() -> None:
    limiter = LlmLimiter(concurrency=1)
    held = await limiter.acquire(1)
    waiter = asyncio.create_task(limiter.acquire(1))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    held.release()
    held.release()  # a second release is harmless
    lease = await asyncio.wait_for(limiter.acquire(1), 1)
    assert limiter.in_flight == 1
    lease.release()
    assert limiter.in_flight == 0


async def test_waiters_are_admitted_in_arrival_order() -> None:
    time = FakeTime()
    limiter = _limiter(time, tokens_per_minute=600)
    (await limiter.acquire(600)).release()
    order: list[str] = []

    async def request(name: str, tokens: int) -> None:
        async with limiter.slot(tokens):
            order.append(name)

    await asyncio.gather(request("big", 500), request("small", 10), request("small2", 10))
    assert order == ["big", "small", "small2"]
