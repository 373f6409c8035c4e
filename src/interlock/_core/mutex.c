/* mutex.c -- slow paths of the robust mutex (algorithm and states: mutex.h). */
#include "mutex.h"

#include "crashpoint.h"

/* Before sleeping, on >1 CPU, a waiter spins for SPIN_PAUSES `pause`s (about
 * 9.4 ns each on the Intel VM of the committed benchmarks: 9 us), polling
 * the word after 1, 2, 4, ... pauses, then every SPIN_BACKOFF_MAX
 * (exponential backoff).  Each poll pulls the word's cache line to the
 * waiter, and the owner must take it back to write it (its release, or its
 * next acquire): polled after every pause, a lock taken in turn by two
 * processes ran at 3.2-3.8 M acquisitions/s, the speed of mp.Lock on that
 * VM; with the backoff (and the load before the CAS in
 * il_mutex_trylock_fast), 7.4-7.9 M/s, the smaller share of the two 42-43%
 * (lock.md, "Spinning"). */
#define SPIN_PAUSES 1000
#define SPIN_BACKOFF_MAX 128

void il_mutex_init(il_mutex_t *m)
{
    atomic_store_explicit(&m->word, 0, memory_order_relaxed);
    atomic_store_explicit(&m->owner_pid, 0, memory_order_relaxed);
    atomic_store_explicit(&m->owner_hint, 0, memory_order_relaxed);
    atomic_store_explicit(&m->owner_tid, 0, memory_order_relaxed);
    m->depth = 0;
    atomic_store_explicit(&m->acquisitions, 0, memory_order_relaxed);
    atomic_store_explicit(&m->contentions, 0, memory_order_relaxed);
    atomic_store_explicit(&m->owner_deaths, 0, memory_order_relaxed);
    atomic_store_explicit(&m->waiters, 0, memory_order_relaxed);
}

static int owner_alive(il_mutex_t *m, uint32_t owner)
{
    /* relaxed: one load of the packed hint gives a (tid, start) pair that
     * belongs together; its start time is used only if it is the owner's. */
    uint64_t hint = atomic_load_explicit(&m->owner_hint, memory_order_relaxed);
    uint64_t start = (uint32_t)hint == owner ? hint >> 32 : 0;
    return il_task_alive(owner, start);
}

/* Take the word over from a dead owner: one CAS from the value `v` we saw
 * (if anyone changed it, we lose and the caller goes round again).  acquire:
 * we inherit whatever the dead owner managed to write.  `waiters` is the
 * WAITERS bit to leave set (conservatively, someone may sleep). */
static int take_over(il_mutex_t *m, uint32_t v, uint32_t tid, uint32_t waiters,
                     uint32_t dead, uint32_t *dead_pid)
{
    /* relaxed: hints, used only in the report */
    uint32_t pid = dead;
    if (atomic_load_explicit(&m->owner_tid, memory_order_relaxed) == dead)
        pid = atomic_load_explicit(&m->owner_pid, memory_order_relaxed);
    if (!atomic_compare_exchange_strong_explicit(&m->word, &v, tid | waiters,
                                                 memory_order_acquire, memory_order_relaxed))
        return 0;
    il_mutex_took(m, tid);
    m->depth = 0;
    atomic_fetch_add_explicit(&m->owner_deaths, 1, memory_order_relaxed);
    if (dead_pid)
        *dead_pid = pid;
    return 1;
}

int il_mutex_lock(il_mutex_t *m, int64_t deadline, uint32_t *dead_pid)
{
    int counted = 0;
    return il_mutex_lock_counted(m, deadline, dead_pid, &counted);
}

int il_mutex_lock_counted(il_mutex_t *m, int64_t deadline, uint32_t *dead_pid, int *counted)
{
    return il_mutex_lock_flags(m, deadline, dead_pid, counted, 0);
}

int il_mutex_lock_flags(il_mutex_t *m, int64_t deadline, uint32_t *dead_pid, int *counted,
                        int flags)
{
    uint32_t tid = il_self_tid();
    if (il_mutex_trylock(m, tid))
        return IL_OK;
    uint32_t v = atomic_load_explicit(&m->word, memory_order_relaxed);
    if ((v & IL_MUTEX_TID_MASK) == tid) {
        /* Held by us.  An owner-checked mutex refuses (it would wait for
         * itself forever); a hand-off one (interlock.Lock, a binary
         * semaphore) waits like any waiter: another thread or process may
         * release it (il_mutex_release_any).  The wait loop below never
         * judges its own TID dead (owner != tid). */
        if (il_mutex_mine(m, tid)) {
            if (!(flags & IL_MUTEX_SELF_WAIT))
                return IL_DEADLK;
            if (deadline == 0)
                return IL_TIMEDOUT;
            goto wait;
        }
        /* Our TID, not our hints: a dead process that had this TID holds
         * it.  Take it over now (we are alive, so that one is not). */
        if (take_over(m, v, tid, v & IL_MUTEX_WAITERS, tid, dead_pid))
            return IL_OWNER_DIED;
    }
    if (deadline == 0) {
        /* Non-blocking, but a lock whose owner is dead is free to take:
         * check (a /proc read, only when the lock is held). */
        uint32_t owner = v & IL_MUTEX_TID_MASK;
        if (owner != 0 && owner != tid && !owner_alive(m, owner) &&
            take_over(m, v, tid, v & IL_MUTEX_WAITERS, owner, dead_pid))
            return IL_OWNER_DIED;
        return IL_TIMEDOUT;
    }

    /* Short spin: the owner is probably running on another CPU and about to
     * release.  Never on one CPU, where spinning only delays the owner. */
    if (il_ncpus() > 1) {
        for (int i = 0, k = 1; i < SPIN_PAUSES;
             i += k, k = k < SPIN_BACKOFF_MAX ? 2 * k : k) {
            for (int j = 0; j < k; j++)
                il_cpu_relax();
            /* relaxed: only whether to try; the CAS orders (acquire) */
            v = atomic_load_explicit(&m->word, memory_order_relaxed);
            if (v == 0 && il_mutex_trylock(m, tid))
                return IL_OK;
        }
    }

wait:
    /* relaxed: statistics.  Once per acquisition, not per call: a caller
     * that waits in phases calls us again with *counted set. */
    if (!*counted) {
        *counted = 1;
        atomic_fetch_add_explicit(&m->contentions, 1, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&m->waiters, 1, memory_order_relaxed);
    int result;
    for (;;) {
        v = atomic_load_explicit(&m->word, memory_order_relaxed);
        if ((v & IL_MUTEX_TID_MASK) == 0) {
            /* Free.  Take it with WAITERS set: others may still sleep, and we
             * cannot know, so the release must wake (Drepper's mutex #3).
             * acquire: as in the fast path. */
            if (atomic_compare_exchange_weak_explicit(&m->word, &v, tid | IL_MUTEX_WAITERS,
                                                      memory_order_acquire,
                                                      memory_order_relaxed)) {
                IL_CRASH(MUTEX_LOCKED);
                il_mutex_took(m, tid);
                result = IL_OK;
                break;
            }
            continue;
        }
        if (!(v & IL_MUTEX_WAITERS)) {
            /* relaxed: the bit carries no data, only "wake me"; the futex
             * syscall itself orders the sleep against the release's xchg. */
            if (!atomic_compare_exchange_weak_explicit(&m->word, &v, v | IL_MUTEX_WAITERS,
                                                       memory_order_relaxed,
                                                       memory_order_relaxed))
                continue;
            v |= IL_MUTEX_WAITERS;
        }
        int64_t now = il_now_ns();
        if (now >= deadline) {
            result = IL_TIMEDOUT;
            break;
        }
        int64_t slice = deadline - now;
        if (slice > IL_MUTEX_SLICE_NS)
            slice = IL_MUTEX_SLICE_NS;
        int r = il_futex_wait(&m->word, v, slice);
        if (r == IL_INTR) {
            result = IL_INTR;
            break;
        }
        if (r == IL_TIMEDOUT) {
            /* A slice passed with the same owner: is it still alive? */
            uint32_t now_v = atomic_load_explicit(&m->word, memory_order_relaxed);
            uint32_t owner = now_v & IL_MUTEX_TID_MASK;
            if (owner != 0 && owner != tid && !owner_alive(m, owner) &&
                take_over(m, now_v, tid, IL_MUTEX_WAITERS, owner, dead_pid)) {
                result = IL_OWNER_DIED;
                break;
            }
        }
    }
    atomic_fetch_sub_explicit(&m->waiters, 1, memory_order_relaxed);
    return result;
}

int il_mutex_unlock(il_mutex_t *m)
{
    if (!il_mutex_mine(m, il_self_tid()))
        return IL_PERM;
    il_mutex_unlock_mine(m);
    return IL_OK;
}

void il_mutex_unlock_mine(il_mutex_t *m)
{
    IL_CRASH(MUTEX_UNLOCK_BEGIN);
    /* relaxed: hint; cleared so that a reader never pairs our start time
     * with the next owner's TID. */
    atomic_store_explicit(&m->owner_tid, 0, memory_order_relaxed);
    /* release: everything written under the lock is visible to the next
     * owner's acquire-CAS.  An exchange, not a store: we must see whether
     * WAITERS was set by the time we freed the word. */
    uint32_t old = atomic_exchange_explicit(&m->word, 0, memory_order_release);
    IL_CRASH(MUTEX_UNLOCK_RELEASED);
    if (old & IL_MUTEX_WAITERS)
        il_futex_wake(&m->word, 1);
}

/* Release by anyone: interlock.Lock is multiprocessing's Lock, a binary
 * semaphore, so the thread that releases need not be the one that acquired
 * (docs/design/lock.md, "Hand-off").  No ownership check: the word is freed
 * if it is held, by whomever; IL_PERM if it is free (released too many
 * times).  Two releasers of one hold: one CAS wins, the other then finds the
 * word free (or held anew: then it releases that hold, as a semaphore's
 * second post would).
 *
 * A CAS loop, not an exchange: an exchange would "free" a word that another
 * releaser freed a moment ago, and the second release must fail instead.
 * The loop retries only when the word changed under it (a waiter adding
 * WAITERS, a takeover from a dead owner, a new acquisition). */
int il_mutex_release_any(il_mutex_t *m)
{
    IL_CRASH(MUTEX_UNLOCK_BEGIN);
    /* relaxed: the CAS below reads the word again; this is only its
     * first guess. */
    uint32_t v = atomic_load_explicit(&m->word, memory_order_relaxed);
    for (;;) {
        if ((v & IL_MUTEX_TID_MASK) == 0)
            return IL_PERM;
        /* relaxed: display hint, as in il_mutex_unlock.  Cleared before the
         * word is, so that a reader never pairs the old owner's pid with
         * the next owner's TID; a stale clear (the word changed under us)
         * only blanks a display field until our CAS, which frees the word
         * anyway (we retry until it is free or we freed it). */
        atomic_store_explicit(&m->owner_tid, 0, memory_order_relaxed);
        IL_CRASH(MUTEX_HANDOFF_CLEARED);
        /* release on success: everything the releaser wrote, and everything
         * that happened-before it (the acquirer's writes under the lock,
         * when the acquirer handed the lock over through any synchronising
         * channel: a queue, a pipe, an Event), happens-before the next
         * owner's acquire CAS.  relaxed on failure: v is reloaded, and we
         * read nothing under the lock. */
        if (atomic_compare_exchange_weak_explicit(&m->word, &v, 0, memory_order_release,
                                                  memory_order_relaxed))
            break;
    }
    IL_CRASH(MUTEX_UNLOCK_RELEASED);
    if (v & IL_MUTEX_WAITERS)
        il_futex_wake(&m->word, 1);
    return IL_OK;
}

/* Wait for "free (or owner dead)" without taking the lock: the asyncio
 * helper thread's wait (aio.py), whose coroutine then tries a non-blocking
 * acquire in the loop's thread, or gives up (cancelled, timed out).
 *
 * Such a waiter shares the FUTEX_WAIT queue of the word with real acquirers,
 * and a release wakes ONE sleeper.  If that one is us, the wake-up is ours
 * and the chain of invariant L2 (docs/design/lock.md: the woken thread takes
 * the lock with WAITERS set, so its release wakes the next) would end here:
 * our caller either takes nothing, or takes the lock with the fast CAS
 * (0 -> TID, no WAITERS), whose release then wakes nobody.  A blocked
 * acquirer in another process slept out its whole 50 ms slice (measured: 4
 * trials in 8 at 48-49 ms instead of 0.5-2 ms).  So a wait-only waiter that
 * returns after a wake-up passes it on: one FUTEX_WAKE for one sleeper, who
 * then either takes the lock (with WAITERS) or finds it taken again and
 * re-arms the bit before it sleeps.  (Model: models/mutex.pml, WATCHER.)
 *
 * Why this and not the alternatives: the pass-on costs one syscall per
 * asyncio wake-up, on the asyncio path only, and nothing on the lock's own
 * paths.  "Release wakes all while a wait-only waiter is registered" would
 * need a registration count read by every contended release, and a count
 * left high by a killed waiter; a separate futex word for wait-only waiters
 * would cost every contended release a second FUTEX_WAKE.  The price of the
 * pass-on: when a blocked acquirer and an asyncio waiter race for the
 * freed lock, the blocked one usually wins (it is woken first-hand and
 * needs no trip through the event loop); the asyncio one waits again. */
int il_mutex_wait_unlocked(il_mutex_t *m, int64_t deadline)
{
    int woken = 0; /* our last FUTEX_WAIT ended by a wake-up: pass it on */
    for (;;) {
        uint32_t v = atomic_load_explicit(&m->word, memory_order_relaxed);
        uint32_t owner = v & IL_MUTEX_TID_MASK;
        if (owner == 0) {
            if (woken)
                il_futex_wake(&m->word, 1);
            return IL_OK;
        }
        if (!(v & IL_MUTEX_WAITERS)) {
            /* relaxed: as in il_mutex_lock, the bit only asks for a wake */
            if (!atomic_compare_exchange_weak_explicit(&m->word, &v, v | IL_MUTEX_WAITERS,
                                                       memory_order_relaxed,
                                                       memory_order_relaxed))
                continue; /* still holding any wake-up we had: look again */
            v |= IL_MUTEX_WAITERS;
        }
        /* Held, WAITERS set (by us or before us): the holder's release will
         * wake a sleeper, so a wake-up we consumed is handed on to it.
         * Only now may we forget it (clearing it before a failed CAS, then
         * finding the word free, lost it: the model found that). */
        woken = 0;
        int64_t now = il_now_ns();
        if (now >= deadline)
            return IL_TIMEDOUT;
        int64_t slice = deadline - now < IL_MUTEX_SLICE_NS ? deadline - now : IL_MUTEX_SLICE_NS;
        int r = il_futex_wait(&m->word, v, slice);
        if (r == IL_INTR)
            return IL_INTR;
        /* IL_OK: woken, or EAGAIN (the word changed before we slept; a
         * useless pass-on then costs one syscall, never a lost wake) */
        woken = r == IL_OK;
        if (r == IL_TIMEDOUT && !owner_alive(m, owner))
            return IL_OK; /* free to take over; we consumed no wake-up */
    }
}
