"""A real, throw-away redis-server for the tests (no fakes, no mocks).

``RedisServer`` starts ``redis-server`` on 127.0.0.1 on a free port, with
persistence off (``--save '' --appendonly no``, unless ``args`` turn it
on) and its files in a temporary directory, and stops it (``stop()``, or at
interpreter exit).  ``restart()`` SIGKILLs it and starts it again on the
same port and directory: without persistence a fresh, empty server; with
an RDB snapshot or an AOF in the directory, what it reloads.

For the contract suite (tests/conftest.py), register the Redis backend with

    from redis_server import redis_backend
    BACKENDS["redis"] = redis_backend   # () -> namespace with Queue, Lock, ...

``redis_backend()`` starts one server per test session (lazily, stopped at
exit) and calls ``pytest.skip`` when redis-server or redis-py is missing.
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def skip_reason() -> str | None:
    """Why the Redis tests cannot run here, or None."""
    if REDIS_SERVER is None:
        return "redis-server is not installed (apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py is not installed (pip install 'interlock[redis]')"
    return None


class RedisServer:
    def __init__(self, port: int | None = None, *, args: tuple[str, ...] = ()) -> None:
        """``args``: more redis-server options, after (so overriding) the
        defaults: ``("--appendonly", "yes", "--appendfsync", "always")``."""
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed")
        self.args = tuple(args)
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="interlock-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--daemonize", "no", "--loglevel", "warning", "--protected-mode", "no",
             *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited at start ({self.proc.returncode})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer within 10 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def flush(self) -> None:
        import redis
        redis.Redis(port=self.port).flushall()


_session: RedisServer | None = None


def session_server() -> RedisServer:
    """One server for the whole test session (started on first use)."""
    global _session
    import pytest
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    if _session is None or _session.proc is None or _session.proc.poll() is not None:
        _session = RedisServer()
    return _session


def redis_backend(**options: Any) -> Any:
    """A backend on the session's server (``interlock.connect(url)``); skips if none."""
    import interlock._connect
    return interlock._connect.connect(session_server().url, **options)


if __name__ == "__main__":  # a server for manual runs: python tests/redis_server.py
    srv = RedisServer()
    print(srv.url, flush=True)
    try:
        signal.pause()
    finally:
        srv.stop()
        os._exit(0)
