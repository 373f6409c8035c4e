"""Child functions of tests/test_inflight.py (a module of their own, so that
a spawn or forkserver child imports only this and interlock)."""
from __future__ import annotations

from typing import Any


def wait_for(event: Any) -> bool:
    """Keep a Pool worker busy until the test sets ``event``."""
    return bool(event.wait(60))


def put_get(q: Any) -> Any:
    q.put(b"through the temporary")
    return q.get(timeout=10)


def use_lock(lock: Any) -> None:
    with lock:
        pass
