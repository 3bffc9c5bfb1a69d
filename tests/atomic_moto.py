"""A fixture that makes moto's DynamoDB writes atomic, as DynamoDB's are.

moto reads an item, checks the write's condition and stores the result without a lock, so
two requests to its threaded server can both pass the same condition; DynamoDB applies
every conditional write to an item atomically. Tests of races between conditional writes
use this so that they test our code, not moto's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def atomic_moto_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto apply each DynamoDB write atomically, as DynamoDB does."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.Lock()
    for name in ("put_item", "update_item", "delete_item"):
        monkeypatch.setattr(DynamoDBBackend, name, _locked(getattr(DynamoDBBackend, name), lock))


def _locked(method: Callable[..., Any], lock: threading.Lock) -> Callable[..., Any]:
    def locked(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return locked
