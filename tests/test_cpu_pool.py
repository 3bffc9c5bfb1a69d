"""The CPU pool with real child processes: steps streamed back, failures carried over,
children killed on cancel and at close, replaced when they die, never left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from service.analysis.cpu_pool import DIED, CpuPool, PoolClosed, TaskFailed
from service.errors import JobError
from tests import cpu_tasks
from tests.waiting import all_gone, eventually, exited, gone

ROOT = Path(__file__).resolve().parents[1]


class Steps:
    """An ``on_step`` that records what it is given."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.first = asyncio.Event()

    async def __call__(self, step: Any) -> None:
        self.seen.append(step)
        self.first.set()


async def test_a_task_streams_its_steps_and_returns_its_result() -> None:
    steps = Steps()
    async with CpuPool(1) as pool:
        result = await pool.run(steps, cpu_tasks.count, 5)
        again = await pool.run(steps, cpu_tasks.count, 2)
    assert result == "counted to 5"
    assert again == "counted to 2"
    assert steps.seen == [1, 2, 3, 4, 5, 1, 2]


async def test_a_child_serves_task_after_task_and_starts_only_when_needed() -> None:
    async with CpuPool(2) as pool:
        assert pool.pids == []  # nothing started until there is work
        first = await pool.run(Steps(), cpu_tasks.whoami)
        second = await pool.run(Steps(), cpu_tasks.whoami)
        assert pool.pids == [first]
    assert first == second != os.getpid()
    assert pool.started == 1


async def test_a_warm_pool_starts_a_child_at_once_with_its_modules_loaded() -> None:
    async with CpuPool(2, preload=["json.tool"], warm=1) as pool:
        (warm,) = pool.pids  # before any task
        steps = Steps()
        assert await pool.run(steps, cpu_tasks.loaded, "json.tool")
        assert not await pool.run(Steps(), cpu_tasks.loaded, "tomllib")
    assert steps.seen == [warm]


async def test_an_idle_child_that_died_is_replaced_before_a_task_reaches_it() -> None:
    async with CpuPool(1, warm=1) as pool:
        (idle,) = pool.pids
        os.kill(idle, signal.SIGKILL)
        await all_gone([idle])
        steps = Steps()
        assert await pool.run(steps, cpu_tasks.count, 1) == "counted to 1"
        assert pool.started == 2


async def test_no_more_than_size_tasks_run_at_once(tmp_path: Path) -> None:
    release = tmp_path / "release"
    steps = Steps()
    async with CpuPool(2) as pool:
        tasks = [
            asyncio.create_task(pool.run(steps, cpu_tasks.wait_for, str(release))) for _ in range(4)
        ]

        async def two_running() -> bool:
            return len(steps.seen) == 2

        await eventually(two_running)
        await asyncio.sleep(0.3)  # give a third task the chance to start, wrongly
        assert len(steps.seen) == 2
        assert pool.busy == 2
        release.touch()
        assert await asyncio.gather(*tasks) == ["released"] * 4
    assert len(set(steps.seen)) == 2  # four tasks, on the same two children


async def test_a_job_error_comes_back_as_it_was_and_the_child_stays() -> None:
    async with CpuPool(1) as pool:
        before = await pool.run(Steps(), cpu_tasks.whoami)
        with pytest.raises(JobError) as failed:
            await pool.run(Steps(), cpu_tasks.refuse, False)
        after = await pool.run(Steps(), cpu_tasks.whoami)
    error = failed.value
    assert (error.code, error.message) == ("content_rejected", "the text was rejected")
    assert (error.transient, error.retry_after_s) == (False, 7)
    assert before == after


async def test_any_other_exception_is_a_task_failure_naming_it() -> None:
    async with CpuPool(1) as pool:
        with pytest.raises(TaskFailed, match=r"ValueError: a bug in the heuristics"):
            await pool.run(Steps(), cpu_tasks.crash)
        assert await pool.run(Steps(), cpu_tasks.count, 1) == "counted to 1"
        assert pool.started == 1


async def test_a_task_that_cannot_be_imported_in_the_child_fails_alone() -> None:
    def local() -> Any:  # pickled by name, but no child can import a nested function
        yield 1

    async with CpuPool(1) as pool:
        with pytest.raises(Exception, match="local"):
            await pool.run(Steps(), local)
        assert await pool.run(Steps(), cpu_tasks.count, 1) == "counted to 1"


async def test_printing_in_a_task_does_not_garble_its_replies() -> None:
    async with CpuPool(1) as pool:
        assert await pool.run(Steps(), cpu_tasks.chatter) == "ok"


async def test_a_result_larger_than_a_pipe_buffer_arrives_whole() -> None:
    async with CpuPool(1) as pool:
        assert await pool.run(Steps(), cpu_tasks.big, 5_000_000) == "x" * 5_000_000


async def test_cancelling_a_task_kills_its_child_at_once_and_a_new_one_serves_next() -> None:
    steps = Steps()
    async with CpuPool(1) as pool:
        task = asyncio.create_task(pool.run(steps, cpu_tasks.spin))
        await asyncio.wait_for(steps.first.wait(), 30)
        (spinning,) = steps.seen
        assert pool.pids == [spinning]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await all_gone([spinning])
        assert pool.killed == 1
        fresh = await pool.run(Steps(), cpu_tasks.whoami)
    assert fresh != spinning


async def test_a_step_callback_that_raises_kills_the_child() -> None:
    class Stop(Exception):
        pass

    seen: list[int] = []

    async def stop(step: int) -> None:
        seen.append(step)
        raise Stop

    async with CpuPool(1) as pool:
        with pytest.raises(Stop):
            await pool.run(stop, cpu_tasks.spin)
        assert pool.pids == []
        await all_gone(seen)
        assert pool.killed == 1


@pytest.mark.parametrize(
    ("task", "args", "how"),
    [(cpu_tasks.kill_self, (), "killed by SIGKILL"), (cpu_tasks.die, (3,), "exit status 3")],
)
async def test_a_child_that_dies_fails_its_task_transiently_and_is_replaced(
    task: Any, args: tuple[Any, ...], how: str
) -> None:
    steps = Steps()
    async with CpuPool(1) as pool:
        with pytest.raises(JobError) as failed:
            await pool.run(steps, task, *args)
        await all_gone(steps.seen)
        assert await pool.run(Steps(), cpu_tasks.count, 2) == "counted to 2"
        assert (pool.started, pool.died) == (2, 1)
    assert failed.value.code == DIED
    assert failed.value.transient
    assert failed.value.message == f"the analysis process died ({how})"


async def test_a_child_killed_from_outside_fails_its_task_and_the_pool_goes_on() -> None:
    steps = Steps()
    async with CpuPool(1) as pool:
        task = asyncio.create_task(pool.run(steps, cpu_tasks.spin))
        await asyncio.wait_for(steps.first.wait(), 30)
        os.kill(steps.seen[0], signal.SIGKILL)
        with pytest.raises(JobError, match="killed by SIGKILL"):
            await task
        assert await pool.run(Steps(), cpu_tasks.count, 1) == "counted to 1"


async def test_closing_kills_busy_and_idle_children_and_reaps_them(tmp_path: Path) -> None:
    busy = Steps()
    pool = CpuPool(2)
    task = asyncio.create_task(pool.run(busy, cpu_tasks.spin))
    await asyncio.wait_for(busy.first.wait(), 30)
    idle = await pool.run(Steps(), cpu_tasks.whoami)
    assert sorted(pool.pids) == sorted([idle, busy.seen[0]])
    await pool.aclose()
    # Reaped, not merely killed: not even a zombie is left.
    assert gone(idle)
    assert gone(busy.seen[0])
    assert pool.pids == []
    with pytest.raises(JobError):
        await task  # its child was killed under it
    await pool.aclose()  # twice is safe
    with pytest.raises(PoolClosed):
        await pool.run(Steps(), cpu_tasks.count, 1)


async def test_a_child_exits_by_itself_when_its_parent_is_killed(tmp_path: Path) -> None:
    """A parent killed outright (SIGKILL, no shutdown) leaves no child spinning."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from service.analysis.cpu_pool import CpuPool
        from tests import cpu_tasks

        async def main():
            async def printed(pid):
                print("child", pid, flush=True)
            async with CpuPool(1) as pool:
                await pool.run(printed, cpu_tasks.spin)

        asyncio.run(main())
        """
    )
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert parent.stdout is not None
        line = b""
        while not line.startswith(b"child "):  # past any log lines
            line = await asyncio.wait_for(parent.stdout.readline(), 60)
        child = int(line.split()[1])
        assert not gone(child)
    finally:
        parent.kill()
        await parent.wait()
    await all_gone([child], ended=exited)
