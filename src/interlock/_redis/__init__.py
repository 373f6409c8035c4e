"""interlock's Redis backend (public surface: ``interlock.redis``).

``_lua``: the server-side function library; ``_client``: the connection,
its errors and the lease keeper; ``_queue``: Queue on a Stream; ``_sync``:
Lock, RLock, Semaphore, Event.  Design: ``docs/design/redis.md``.
"""
