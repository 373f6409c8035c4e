"""Deadlock tools: avoidance, validation and detection.

- ``_order``: lock levels and ``ordered()`` (Dijkstra's resource
  hierarchy), and the per-thread record of held locks the others read;
- ``lockdep``: lock-order validation across processes (Linux lockdep),
  public as ``interlock.lockdep``;
- ``_waitfor``: the shared table of long waits and the wait-for graph
  (runtime detection, ``set_deadlock_timeout``);
- ``_tracked``: the methods the C core calls on a tracked lock, joining
  the three; ``_switches``: lockdep on/off and the deadlock timeout, the
  two facts the C core is told; ``_table``: the shared record table.

Imports go one way: ``_switches`` <- ``_order`` <- ``_waitfor``, ``lockdep``
<- ``_tracked``.  ``_order`` reaches lockdep through the hook lockdep sets in
``_switches``; nothing here imports the primitives.
"""
from . import lockdep
from ._order import ordered
from ._waitfor import deadlock_timeout, set_deadlock_timeout

__all__ = ["lockdep", "ordered", "deadlock_timeout", "set_deadlock_timeout"]
