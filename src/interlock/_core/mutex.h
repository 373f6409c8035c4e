/*
 * mutex.h -- a robust, process-shared mutex on one futex word.
 *
 * The algorithm is the classic three-state futex mutex (Drepper, "Futexes Are
 * Tricky", 2011, mutex #2/#3), with the owner's TID in the word instead of a
 * bare "locked" value, so that a waiter can tell whom it waits for.  Robustness
 * is by liveness check, not by the kernel's robust list (that list belongs to
 * glibc, one per thread): a waiter sleeps in slices of IL_MUTEX_SLICE_NS and,
 * after each slice, checks whether the owner is alive (platform.h:
 * il_task_alive, zombie-aware, TID-reuse-aware).  If not, it takes the word
 * over with one CAS and reports IL_OWNER_DIED.  Recovery therefore takes at
 * most one slice (50 ms) after the owner's death.
 *
 * The word (32 bits):
 *
 *   bit 31      WAITERS: some thread may sleep in FUTEX_WAIT on the word;
 *               the releaser must FUTEX_WAKE.  Set by waiters, cleared only
 *               by release.  A stale bit costs one useless wake, never a
 *               lost one.
 *   bits 0..29  owner TID, 0 when free.  (Linux pid_max is at most 2^22.)
 *
 *   state table       meaning
 *   0                 free
 *   T                 held by thread T, nobody sleeps
 *   T | WAITERS       held by T, waiters may sleep: release wakes one
 *   WAITERS (T == 0)  never stored: release writes 0
 *
 * The side fields are written by the owner right after the CAS that took
 * the word, and are only hints.  owner_hint packs the owner's TID and the
 * low 32 bits of its start time into ONE 64-bit word, written with one
 * store and read with one load: the liveness check reads a (tid, start)
 * pair that belongs together, and trusts the start time only if that tid
 * is the TID in the word.  (Two separate fields let a waiter pair one
 * owner's TID with the next owner's start time and, the word having come
 * back to the same value, steal the lock from a living owner: found by the
 * model models/mutex.pml, see docs/design/verification.md.)  owner_pid and
 * owner_tid are for display only.
 *
 * Death at each step (see docs/design/lock.md):
 *   - before the CAS: nothing held, nothing to do;
 *   - after the CAS, before the side fields: the word names the dead TID,
 *     the liveness check uses /proc without the start time;
 *   - while holding: the next waiter takes it over after one slice and is
 *     told (IL_OWNER_DIED);
 *   - in release, after the xchg and before the wake: the word is free; a
 *     sleeper wakes at the end of its slice and takes it;
 *   - a hand-off releaser (il_mutex_release_any: interlock.Lock, released by
 *     anyone) holds nothing: dying before its CAS, it just did not release
 *     (the acquirer still owns the word); after it, as the line above.
 *
 * Two kinds of mutex share the word: owner-checked (RLock, the core's own
 * locks: only the owner releases, IL_DEADLK on the owner's second lock) and
 * hand-off (interlock.Lock, multiprocessing's binary semaphore: anyone
 * releases, the owner's second lock waits, IL_MUTEX_SELF_WAIT).  "Owner" is
 * the last acquirer either way; only it writes the hints.
 */
#ifndef INTERLOCK_MUTEX_H
#define INTERLOCK_MUTEX_H

#include "crashpoint.h"
#include "platform.h"

#define IL_MUTEX_WAITERS 0x80000000u
#define IL_MUTEX_TID_MASK 0x3fffffffu
#define IL_MUTEX_SLICE_NS 50000000LL /* 50 ms between owner liveness checks */

typedef struct il_mutex {
    _Atomic uint32_t word;
    _Atomic uint32_t owner_pid;   /* hint: process of the owner, for display */
    _Atomic uint64_t owner_hint;  /* hint: (start time & 0xffffffff) << 32 | tid */
    _Atomic uint32_t owner_tid;   /* display: the owner's TID */
    uint32_t depth;               /* RLock recursion depth; only the owner touches it */
    _Atomic uint64_t acquisitions;    /* statistics, relaxed */
    _Atomic uint64_t contentions;     /* acquisitions that had to wait */
    _Atomic uint32_t owner_deaths;    /* takeovers from a dead owner */
    _Atomic uint32_t waiters;         /* threads in the slow path right now */
    uint8_t _pad[IL_CACHELINE - 48];
} il_mutex_t;

_Static_assert(sizeof(il_mutex_t) == IL_CACHELINE, "il_mutex_t is one cache line");

/* The bare CAS of the fast path (il_mutex_trylock below is the fast path). */
static inline int il_mutex_trylock_fast(il_mutex_t *m, uint32_t tid)
{
    uint32_t expected = 0;
    /* Test before the CAS.  relaxed: it only decides whether to try; the CAS
     * below orders.  A CAS takes the cache line exclusive even when it
     * fails, out of the hands of an owner about to write it; a load shares
     * it.  The load costs nothing measurable when the line is ours. */
    if (atomic_load_explicit(&m->word, memory_order_relaxed) != 0)
        return 0;
    /* acquire: what the previous owner wrote under the lock happens-before
     * what we read under it. relaxed on failure: we read nothing then. */
    if (atomic_compare_exchange_strong_explicit(&m->word, &expected, tid,
                                                memory_order_acquire,
                                                memory_order_relaxed)) {
        return 1;
    }
    return 0;
}

void il_mutex_init(il_mutex_t *m);
/* Take the lock before `deadline` (IL_FOREVER: no deadline; 0: try once).
 * Returns IL_OK, IL_OWNER_DIED (taken; *dead_pid names the dead owner's
 * process when known, else its TID), IL_TIMEDOUT, IL_INTR or IL_DEADLK. */
int il_mutex_lock(il_mutex_t *m, int64_t deadline, uint32_t *dead_pid);
/* The same, for a caller that waits in several calls (phases of a deadlock
 * check, restarts after a signal): `contentions` counts acquisitions that had
 * to wait, so it is incremented only if *counted is 0, which it then sets to
 * 1.  The caller starts *counted at 0 for each acquisition. */
int il_mutex_lock_counted(il_mutex_t *m, int64_t deadline, uint32_t *dead_pid, int *counted);
/* The same with flags: IL_MUTEX_SELF_WAIT makes a lock held by the caller
 * wait (until another thread releases it, or the deadline) instead of
 * returning IL_DEADLK: interlock.Lock, whose release may come from anyone. */
#define IL_MUTEX_SELF_WAIT 1
int il_mutex_lock_flags(il_mutex_t *m, int64_t deadline, uint32_t *dead_pid, int *counted,
                        int flags);
/* Wait until the lock is free or its owner is dead, taking nothing.
 * Returns IL_OK, IL_TIMEDOUT or IL_INTR. */
int il_mutex_wait_unlocked(il_mutex_t *m, int64_t deadline);
/* Release; IL_PERM if the caller does not own it. */
int il_mutex_unlock(il_mutex_t *m);
/* Release a lock the caller has just checked it owns (il_mutex_mine):
 * il_mutex_unlock without its second check. */
void il_mutex_unlock_mine(il_mutex_t *m);
/* Release whoever holds it (interlock.Lock's hand-off); IL_PERM if free. */
int il_mutex_release_any(il_mutex_t *m);
/* Owner's TID or 0. */
static inline uint32_t il_mutex_owner(il_mutex_t *m)
{
    /* relaxed: a snapshot for display or ownership tests by the owner itself */
    return atomic_load_explicit(&m->word, memory_order_relaxed) & IL_MUTEX_TID_MASK;
}

/* Does the calling thread hold the lock?  The TID alone is not enough: a
 * process that died holding the lock may have had the TID that we have now
 * (TIDs are reused), so the owner hints must name us too. */
static inline uint64_t il_mutex_hint(uint32_t tid)
{
    return (il_self_start() & 0xffffffffu) << 32 | tid;
}

static inline int il_mutex_mine(il_mutex_t *m, uint32_t tid)
{
    /* relaxed: we compare with our own hint, which only we write, in
     * program order before this load when we hold the lock */
    return il_mutex_owner(m) == tid &&
           atomic_load_explicit(&m->owner_hint, memory_order_relaxed) == il_mutex_hint(tid);
}

/* Right after taking the word: publish who we are (hints, see above). */
static inline void il_mutex_note_owner(il_mutex_t *m, uint32_t tid)
{
    /* relaxed: hints, each one atomic word; the liveness check reads the
     * packed hint in one load and checks its tid against the word */
    atomic_store_explicit(&m->owner_pid, il_self_pid_fast(), memory_order_relaxed);
    atomic_store_explicit(&m->owner_hint, il_mutex_hint(tid), memory_order_relaxed);
    atomic_store_explicit(&m->owner_tid, tid, memory_order_relaxed);
}

/* Right after any take of the word (fast path, slow path, take-over):
 * publish who we are and count the acquisition. */
static inline void il_mutex_took(il_mutex_t *m, uint32_t tid)
{
    il_mutex_note_owner(m, tid);
    /* We own the lock: a plain increment (no locked RMW) is race-free.
     * relaxed: statistics. */
    atomic_store_explicit(&m->acquisitions,
                          atomic_load_explicit(&m->acquisitions, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* THE fast path, inlined in every taker (il_mutex_lock, the bindings, the
 * sync guard): one CAS, then the hints.  Returns 1 if taken.  A death at
 * the crash point leaves the word naming us and no hints (mutex.h, top). */
static inline int il_mutex_trylock(il_mutex_t *m, uint32_t tid)
{
    if (!il_mutex_trylock_fast(m, tid))
        return 0;
    IL_CRASH(MUTEX_LOCKED);
    il_mutex_took(m, tid);
    return 1;
}

#endif
