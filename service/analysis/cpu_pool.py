"""CPU-bound work in child processes that can be killed: a small pool sized to the cores.

A thread cannot be stopped, so a long analysis in one keeps a core (and its job's slot)
whatever happens to the job. Here each task runs in a child process of the pool, and the
task's awaiting coroutine is all the control there is: while it waits, the task runs; when
it is cancelled (a cancel, a deadline, the shutdown), the child is killed at once and a new
one takes its place on a later task.

A task is a generator function and its arguments, all picklable (a module-level function).
The child runs the whole generator; every value it yields comes back as it happens and is
passed to the caller's ``on_step``, and its return value comes back as the task's result.
A :class:`JobError` it raises is raised again in the parent as it was; any other exception
becomes :class:`TaskFailed`. A child that dies on its own (out of memory, a crash, killed
from outside) fails its task with a transient ``analysis_process_died`` and is replaced.

The children are fresh interpreters (``python -c``, see :mod:`~service.analysis.cpu_child`),
never forks of the parent: the parent runs an event loop and threads, which a fork would
copy in whatever state they were in. They start on demand (a process that never runs CPU
work starts none), or ``warm`` ones as the pool opens, so that the first task does not
wait for an interpreter to start and import the task's modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import signal
import sys
from collections.abc import Awaitable, Callable, Generator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar, cast

from service.analysis.cpu_child import DONE, ERROR, HEADER, JOB_ERROR, STEP
from service.errors import JobError
from service.logs import get_logger

log = get_logger(__name__)

P = ParamSpec("P")
S = TypeVar("S")
R = TypeVar("R")

_ROOT = str(Path(__file__).resolve().parents[2])
# The child imports this very package (its directory first on the path), whatever the
# parent's working directory or install, so both sides run the same code.
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from service.analysis.cpu_child import serve; serve(sys.argv[2:])"
)

DIED = "analysis_process_died"
"""The error code of a task whose child died under it."""


class TaskFailed(Exception):
    """A task raised something other than :class:`JobError` in its child; the message
    names the exception's type and says what it said."""


class PoolClosed(RuntimeError):
    """A task was given to a pool that has been closed."""


class CpuPool:
    """At most ``size`` child processes, each running one task at a time.

    Every child imports the ``preload`` modules as it starts, before its first task.
    Entering the pool starts ``warm`` children at once, which then load while the process
    gets on with its own start; the others start when a task finds none idle.

    Use it as an async context manager (or call :meth:`aclose`): leaving it kills every
    child and reaps it, so none outlives the pool. Closing twice is safe.
    """

    def __init__(self, size: int, *, preload: Sequence[str] = (), warm: int = 0) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one process")
        self.size = size
        self._preload = list(preload)
        self._warm = min(warm, size)
        self._slots = asyncio.Semaphore(size)
        self._idle: list[_Child] = []
        self._children: set[_Child] = set()
        self._reaping: set[asyncio.Task[None]] = set()
        self._closed = False
        self.started = 0
        """Children started so far."""
        self.killed = 0
        """Children killed because their task's caller stopped waiting, or at close."""
        self.died = 0
        """Children that died on their own under a task."""

    async def __aenter__(self) -> Self:
        for _ in range(self._warm):
            self._idle.append(await self._start())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def pids(self) -> list[int]:
        """The process ids of the children alive now, idle or busy."""
        return sorted(child.pid for child in self._children)

    @property
    def busy(self) -> int:
        """Children running a task now."""
        return len(self._children) - len(self._idle)

    async def run(
        self,
        on_step: Callable[[S], Awaitable[None]],
        steps: Callable[P, Generator[S, None, R]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Run ``steps(*args, **kwargs)`` in a child, awaiting ``on_step`` with each value
        it yields, in order; the generator's return value is the result.

        Waits for a free child while all are busy. Cancelling the call, or ``on_step``
        raising, kills the child.
        """
        request = pickle.dumps((steps, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        async with self._slots:
            if self._closed:
                raise PoolClosed("the CPU pool is closed")
            child = await self._take()
            try:
                kind, value = await child.run(request, on_step)
            except _ChildDied as died:
                raise self._died(child, died.how) from None
            except BaseException:
                self._kill(child)
                raise
            if self._closed:
                self._kill(child)
            else:
                self._idle.append(child)
        return cast(R, _result(kind, value))

    async def aclose(self) -> None:
        """Kill every child, idle or busy, and wait until each is reaped."""
        self._closed = True
        for child in list(self._children):
            self._kill(child)
        while self._reaping:
            await asyncio.gather(*self._reaping, return_exceptions=True)

    async def _take(self) -> _Child:
        """An idle child, or a new one; a child that died while idle is not given out."""
        while self._idle:
            child = self._idle.pop()
            if child.alive:
                return child
            log.warning("analysis process died while idle", pid=child.pid)
            self._forget(child)
        return await self._start()

    async def _start(self) -> _Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _BOOT,
            _ROOT,
            *self._preload,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        child = _Child(process)
        self._children.add(child)
        self.started += 1
        log.debug("analysis process started", pid=child.pid)
        return child

    def _died(self, child: _Child, how: str) -> JobError:
        """The failure of a task whose child ended under it (killed at close or not)."""
        if child in self._children:
            self.died += 1
            log.warning("analysis process died", pid=child.pid, exit=how)
            self._forget(child)
        return JobError(DIED, f"the analysis process died ({how})", transient=True)

    def _kill(self, child: _Child) -> None:
        """Kill a child now; it is reaped in the background, and :meth:`aclose` waits."""
        if child not in self._children:
            return
        child.kill()
        self.killed += 1
        self._forget(child)

    def _forget(self, child: _Child) -> None:
        self._children.discard(child)
        if child in self._idle:
            self._idle.remove(child)
        task = asyncio.get_running_loop().create_task(child.reap(), name=f"reap-{child.pid}")
        self._reaping.add(task)
        task.add_done_callback(self._reaped)

    def _reaped(self, task: asyncio.Task[None]) -> None:
        self._reaping.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("could not reap an analysis process", error=repr(task.exception()))


def _result(kind: str, value: Any) -> Any:
    """The task's result, or its failure raised as the parent's exception."""
    if kind == DONE:
        return value
    if kind == JOB_ERROR:
        code, message, transient, retry_after_s = value
        raise JobError(code, message, transient=transient, retry_after_s=retry_after_s)
    if kind == ERROR:
        raise TaskFailed(str(value))
    raise TaskFailed(f"an analysis process sent an unknown reply: {kind!r}")


class _ChildDied(Exception):
    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.how = how


class _Child:
    """One child process and its two pipes, from the parent's side."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self.pid = process.pid

    async def run(
        self, request: bytes, on_step: Callable[[Any], Awaitable[None]]
    ) -> tuple[str, Any]:
        """Send one task and pass its steps on until its result (or failure) arrives."""
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None
        assert stdout is not None
        try:
            stdin.write(HEADER.pack(len(request)) + request)
            await stdin.drain()
            while True:
                size = HEADER.unpack(await stdout.readexactly(HEADER.size))[0]
                kind, value = pickle.loads(await stdout.readexactly(size))
                if kind != STEP:
                    return kind, value
                await on_step(value)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise _ChildDied(await self._how_it_ended()) from exc

    @property
    def alive(self) -> bool:
        """False once the process is known to have exited."""
        return self._process.returncode is None

    def kill(self) -> None:
        """SIGKILL, unless it has already exited."""
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    async def reap(self) -> None:
        """Wait for the exit, so no zombie is left."""
        await self._process.wait()

    async def _how_it_ended(self) -> str:
        code = await self._process.wait()
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"
