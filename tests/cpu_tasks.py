"""Tasks for the CPU pool's tests: module-level generator functions, so that a pool's
process can import them by name."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Generator
from pathlib import Path

from service.errors import JobError


def count(upto: int) -> Generator[int, None, str]:
    """Yield 1..``upto``, then return a sentence about it."""
    yield from range(1, upto + 1)
    return f"counted to {upto}"


def whoami() -> Generator[int, None, int]:
    """Yield and return the process id of the process running the task."""
    yield os.getpid()
    return os.getpid()


def spin(mark: str | None = None) -> Generator[int, None, None]:
    """Yield the process id, touch ``mark`` if given, then burn CPU for ever, as a
    hostile input would."""
    yield os.getpid()
    if mark is not None:
        Path(mark).touch()
    while True:
        sum(range(10_000))


def wait_for(path: str) -> Generator[int, None, str]:
    """Yield the process id, then wait (without burning CPU) until ``path`` exists."""
    yield os.getpid()
    while not Path(path).exists():
        time.sleep(0.01)
    return "released"


def refuse(transient: bool) -> Generator[int, None, None]:
    """Fail as an analyzer does, with a :class:`JobError`."""
    yield 1
    raise JobError(
        "content_rejected", "the text was rejected", transient=transient, retry_after_s=7
    )


def crash() -> Generator[int, None, None]:
    """Fail with an exception that is not a :class:`JobError`."""
    yield 1
    raise ValueError("a bug in the heuristics")


def die(status: int) -> Generator[int, None, None]:
    """End the process under the task, as a segfault or an out-of-memory kill would."""
    yield os.getpid()
    os._exit(status)


def kill_self() -> Generator[int, None, None]:
    """Die of a signal in the middle of the task."""
    yield os.getpid()
    os.kill(os.getpid(), signal.SIGKILL)


def chatter() -> Generator[int, None, str]:
    """Print to stdout between steps, which must not garble the replies."""
    print("some library printing to stdout")
    yield 1
    print("more of it", flush=True)
    return "ok"


def big(chars: int) -> Generator[int, None, str]:
    """Return a result far larger than a pipe's buffer."""
    yield 1
    return "x" * chars


def loaded(module: str) -> Generator[int, None, bool]:
    """Whether ``module`` was imported in this process before the task ran."""
    import sys

    yield os.getpid()
    return module in sys.modules
