"""The child side of :mod:`service.analysis.cpu_pool`: the loop a pool's process runs.

It reads a task (a pickled generator function and its arguments) from stdin, runs it, and
writes each value the generator yields, then its result or its failure, to stdout, each
as a length-prefixed pickle. It imports only the standard library and the service's
exceptions, so a child is ready in the time an interpreter takes to start; the task's own
modules load when its function is unpickled.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, BinaryIO

from service.errors import JobError

HEADER = struct.Struct("!Q")
"""The length of the pickle that follows, in front of every request and reply."""
STEP, DONE, JOB_ERROR, ERROR = "step", "done", "job_error", "error"
"""The kinds of reply: a yielded value, the result, a :class:`JobError`, any other failure."""
ORPHAN_CHECK_S = 1.0
"""How often a child checks that its parent is still there."""

Task = tuple[Callable[..., Generator[Any, None, Any]], Sequence[Any], Mapping[str, Any]]


def serve(preload: Sequence[str] = ()) -> None:
    """A child's main loop: import ``preload``, then read a task, run it, write its steps
    and its result; exit at the end of input (the parent closed the pipe or went away)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # Replies go to the original stdout; anything printed goes to stderr instead.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _exit_when_orphaned(os.getppid())
    for module in preload:
        # Only ahead of time: a module that fails here fails the task that needs it.
        with contextlib.suppress(Exception):
            importlib.import_module(module)
    requests = sys.stdin.buffer
    while True:
        header = requests.read(HEADER.size)
        if len(header) < HEADER.size:
            return
        _run_task(replies, requests.read(HEADER.unpack(header)[0]))


def _run_task(replies: BinaryIO, request: bytes) -> None:
    reply: tuple[str, Any]
    try:
        # Unpickling imports the task's module: an error there is the task's failure.
        task: Task = pickle.loads(request)
        steps, args, kwargs = task
        generator = steps(*args, **kwargs)
        while True:
            _reply(replies, STEP, next(generator))
    except StopIteration as done:
        reply = (DONE, done.value)
    except JobError as exc:
        reply = (JOB_ERROR, (exc.code, exc.message, exc.transient, exc.retry_after_s))
    except Exception as exc:
        reply = (ERROR, f"{type(exc).__name__}: {exc}")
    try:
        _reply(replies, *reply)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        _reply(replies, ERROR, f"the result could not be sent back: {exc}")


def _reply(replies: BinaryIO, kind: str, value: Any) -> None:
    payload = pickle.dumps((kind, value), protocol=pickle.HIGHEST_PROTOCOL)
    try:
        replies.write(HEADER.pack(len(payload)) + payload)
        replies.flush()
    except OSError:
        os._exit(0)  # the parent has gone: nobody is waiting for the rest


def _exit_when_orphaned(parent: int) -> None:
    """Exit once the parent is gone, even in the middle of a task: a parent killed
    outright cannot kill its children, and a long task would not notice a closed pipe."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="orphan-check", daemon=True).start()
