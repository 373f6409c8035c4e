/*
 * layout.h -- every byte offset and bit of shared memory that something
 * outside the C core reads: the Python tools (deadlock detection in
 * _waitfor.py, `interlock ls` in _registry.py, statistics in _sync.py) and
 * the design notes.  Each fact is stated once, here, as a constant; a
 * static assert ties it to the struct, so a field moved in mutex.h, ring.h
 * or sync.h stops the build instead of silently misleading the tools; and
 * the module exports the constants to Python (_core.MUTEX_OFF_WORD, ...),
 * which uses them instead of numbers of its own (tests/test_layout.py reads
 * live objects through them).  No Python.h: the list is an X-macro that
 * bind_module.c turns into module constants.
 */
#ifndef INTERLOCK_LAYOUT_H
#define INTERLOCK_LAYOUT_H

#include <stddef.h>

#include "mutex.h"
#include "ring.h"
#include "sync.h"

/* X(python name, value) */
#define IL_LAYOUT(X)                                                                   \
    /* il_mutex_t (mutex.h): the lock word and the owner hints */                       \
    X(MUTEX_SIZE, sizeof(il_mutex_t))                                                  \
    X(MUTEX_OFF_WORD, offsetof(il_mutex_t, word))                                                               \
    X(MUTEX_OFF_OWNER_PID, offsetof(il_mutex_t, owner_pid))                                                          \
    X(MUTEX_OFF_OWNER_HINT, offsetof(il_mutex_t, owner_hint))                                                         \
    X(MUTEX_OFF_OWNER_TID, offsetof(il_mutex_t, owner_tid))                                                         \
    X(MUTEX_TID_MASK, IL_MUTEX_TID_MASK)                                               \
    X(MUTEX_WAITERS, IL_MUTEX_WAITERS)                                                 \
    /* il_ring_t (ring.h): the side locks `interlock ls` reads holders from */          \
    X(RING_HEADER_SIZE, sizeof(il_ring_t))                                             \
    X(RING_OFF_PLOCK, offsetof(il_ring_t, plock))                                                              \
    X(RING_OFF_CLOCK, offsetof(il_ring_t, clock))                                                             \
    X(RING_OFF_SPILLED, offsetof(il_ring_t, spilled))                                  \
    /* il_sync_slot_t (sync.h): the holder-table record and its states */              \
    X(SYNC_HEAD_SIZE, sizeof(il_sync_head_t))                                          \
    X(SYNC_SLOT_SIZE, sizeof(il_sync_slot_t))                                          \
    X(SYNC_SLOT_OFF_PID, offsetof(il_sync_slot_t, pid))                                                            \
    X(SYNC_SLOT_OFF_TID, offsetof(il_sync_slot_t, tid))                                                            \
    X(SYNC_SLOT_OFF_COUNT, offsetof(il_sync_slot_t, count))                                                          \
    X(SYNC_SLOT_OFF_STATE, offsetof(il_sync_slot_t, state))                                                         \
    X(SYNC_SLOT_OFF_START, offsetof(il_sync_slot_t, start))                                                         \
    X(SLOT_IDLE, IL_SLOT_IDLE)                                                         \
    X(SLOT_WAITING, IL_SLOT_WAITING)                                                   \
    X(SLOT_PASSED, IL_SLOT_PASSED)                                                     \
    X(SLOT_BROKEN, IL_SLOT_BROKEN)                                                     \
    X(SLOT_NOTIFIED, IL_SLOT_NOTIFIED)                                                 \
    X(SLOT_WRITER_WAITING, IL_SLOT_WRITER_WAITING)                                     \
    X(SLOT_RECOVERED, IL_SLOT_RECOVERED)

/* The numbers below are the ones the design notes (lock.md, queue.md,
 * sync.md) print; the X-macro exports offsetof itself. */
_Static_assert(offsetof(il_mutex_t, word) == 0, "MUTEX_OFF_WORD");
_Static_assert(offsetof(il_mutex_t, owner_pid) == 4, "MUTEX_OFF_OWNER_PID");
_Static_assert(offsetof(il_mutex_t, owner_hint) == 8, "MUTEX_OFF_OWNER_HINT");
_Static_assert(offsetof(il_mutex_t, owner_tid) == 16, "MUTEX_OFF_OWNER_TID");
_Static_assert(sizeof(((il_mutex_t *)0)->word) == 4, "the lock word is 32 bits");
_Static_assert(sizeof(((il_mutex_t *)0)->owner_hint) == 8, "owner_hint is one 64-bit word");
_Static_assert(IL_MUTEX_TID_MASK == 0x3fffffffu, "MUTEX_TID_MASK (docs/design/lock.md)");
_Static_assert(IL_MUTEX_WAITERS == 0x80000000u, "MUTEX_WAITERS (docs/design/lock.md)");
_Static_assert((IL_MUTEX_TID_MASK & IL_MUTEX_WAITERS) == 0, "owner and waiters bits apart");

_Static_assert(offsetof(il_ring_t, plock) == 64, "RING_OFF_PLOCK");
_Static_assert(offsetof(il_ring_t, clock) == 192, "RING_OFF_CLOCK");
_Static_assert(offsetof(il_ring_t, spilled) == 516, "RING_OFF_SPILLED (queue.md)");

_Static_assert(offsetof(il_sync_slot_t, pid) == 0, "SYNC_SLOT_OFF_PID");
_Static_assert(offsetof(il_sync_slot_t, tid) == 4, "SYNC_SLOT_OFF_TID");
_Static_assert(offsetof(il_sync_slot_t, count) == 8, "SYNC_SLOT_OFF_COUNT");
_Static_assert(offsetof(il_sync_slot_t, state) == 12, "SYNC_SLOT_OFF_STATE");
_Static_assert(offsetof(il_sync_slot_t, start) == 16, "SYNC_SLOT_OFF_START");
_Static_assert(sizeof(il_sync_slot_t) == 32, "SYNC_SLOT_SIZE");
_Static_assert(offsetof(il_sync_head_t, guard) == 0, "the guard is the head's first line");
_Static_assert(IL_SLOT_WAITING == 1 && IL_SLOT_NOTIFIED == 4 && IL_SLOT_RECOVERED == 6,
               "slot states are shared-memory values: never renumber");

#endif
