"""A real, throw-away redis-server for the tests (no fakes, no mocks).

``RedisServer`` starts ``redis-server`` on 127.0.0.1 on a free port, with
persistence off (``--save '' --appendonly no``, unless ``extra`` turns it
on) and its files in a temporary directory, and stops it (``stop()``, or at
interpreter exit).  ``restart()`` SIGKILLs it and starts it again on the
same port and directory: without persistence a fresh, empty server; with
an RDB snapshot or an AOF in the directory, what it reloads.

For the contract suite (tests/conftest.py), register the Redis backend with

    from redis_server import redis_backend
    BACKENDS["redis"] = redis_backend   # () -> namespace with Queue, Lock, ...

``redis_backend()`` starts one server per test session (lazily, stopped at
exit) and skips (fails under CI=true) when redis-server or redis-py is missing.

``LocalCluster`` starts a Redis Cluster of three primaries on loopback
(``redis-cli --cluster create``); ``LocalSentinel`` a primary, one replica
and one Sentinel watching them.  Both are real servers, stopped at exit.
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


def free_port_pair() -> int:
    """A port p with p + 10000 free too (a cluster node's bus port)."""
    import random
    for _ in range(200):
        p = random.randrange(20000, 30000)
        try:
            for q in (p, p + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", q))
        except OSError:
            continue
        return p
    raise RuntimeError("no free port pair")


class RedisServer:
    def __init__(self, port: int | None = None, extra: tuple[str, ...] = (),
                 argv: list[str] | None = None) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed")
        self.extra = extra
        self.argv = argv  # replaces the command line (a Sentinel's)
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="interlock-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = self.argv or [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", self.dir,
            "--daemonize", "no", "--loglevel", "warning", "--protected-mode", "no",
            *self.extra]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited at start ({self.proc.returncode})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith((b"+PONG", b"-NOAUTH")):
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


def _wait(pred: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


class LocalCluster:
    """Three cluster-enabled redis-servers, joined by ``redis-cli --cluster
    create`` (16384 slots split over three primaries, no replicas)."""

    def __init__(self) -> None:
        self.nodes: list[RedisServer] = []
        try:
            for _ in range(3):
                port = free_port_pair()
                self.nodes.append(RedisServer(port, extra=(
                    "--cluster-enabled", "yes", "--cluster-node-timeout", "5000",
                    "--cluster-config-file", f"nodes-{port}.conf")))
            subprocess.run(
                [shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
                 *(f"127.0.0.1:{n.port}" for n in self.nodes), "--cluster-replicas", "0",
                 "--cluster-yes"], check=True, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, timeout=60)
            import redis
            for n in self.nodes:
                c = redis.Redis(port=n.port)
                _wait(lambda c=c: c.cluster("info")["cluster_state"] == "ok", "cluster_state:ok")
                c.close()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


class LocalSentinel:
    """A primary, one replica and one Sentinel that monitors them as
    ``service`` (quorum 1, a primary is down after 1 s)."""

    service = "ilmaster"

    def __init__(self) -> None:
        self.servers: list[RedisServer] = []
        try:
            self.primary = RedisServer()
            self.servers.append(self.primary)
            self.replica = RedisServer(extra=("--replicaof", "127.0.0.1", str(self.primary.port)))
            self.servers.append(self.replica)
            import redis
            rep = redis.Redis(port=self.replica.port)
            _wait(lambda: rep.info("replication")["master_link_status"] == "up", "replication")
            port = free_port()
            d = tempfile.mkdtemp(prefix="interlock-sentinel-")
            conf = os.path.join(d, "sentinel.conf")
            with open(conf, "w") as f:
                f.write(f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {d}\n"
                        f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} 1\n"
                        f"sentinel down-after-milliseconds {self.service} 1000\n"
                        f"sentinel failover-timeout {self.service} 5000\n")
            self.sentinel = RedisServer(port, argv=[REDIS_SERVER or "redis-server", conf,
                                                    "--sentinel"])
            shutil.rmtree(self.sentinel.dir, ignore_errors=True)
            self.sentinel.dir = d  # (removed by stop(), with the rewritten sentinel.conf)
            self.servers.append(self.sentinel)
            sen = redis.Redis(port=port)
            _wait(lambda: sen.sentinel_master(self.service)["num-slaves"] >= 1,
                  "the sentinel to see the replica")
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.service}/0"

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


_session: RedisServer | None = None


def session_server() -> RedisServer:
    """One server for the whole test session (started on first use)."""
    global _session
    from _helpers import skip_or_fail
    reason = skip_reason()
    if reason:
        skip_or_fail(reason)
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
