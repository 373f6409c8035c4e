/*
 * eventcount.h -- sleep until a condition on shared memory may have changed,
 * with no syscall on the notifier's side unless somebody sleeps.
 *
 * An eventcount (Vyukov; also folly's EventCount) is a sequence word `seq`
 * that sleepers wait on with FUTEX_WAIT, and a count of `waiters`.
 *
 *   waiter                                notifier
 *   waiters += 1        (seq_cst RMW)     publish the change (store)
 *   fence(seq_cst)                        fence(seq_cst)
 *   s = seq             (acquire)         if waiters > 0:
 *   if condition: waiters -= 1; done          seq += 1   (release)
 *   futex_wait(&seq, s, slice)                futex_wake(&seq, n)
 *   waiters -= 1
 *
 * No lost wake-up: by the two seq_cst fences, either the waiter's condition
 * check sees the published change, or the notifier sees waiters > 0 and bumps
 * seq; then the waiter's FUTEX_WAIT either finds seq != s (returns at once) or
 * is already queued and is woken.  (Model: docs/design/queue.md.)
 *
 * Death: a waiter killed while counted leaves `waiters` one too high forever:
 * notifiers then make a useless FUTEX_WAKE per publish (slower, never wrong).
 * A notifier killed between its publish and its wake delays sleepers by at
 * most one slice: every sleep is bounded by the caller's slice.
 */
#ifndef INTERLOCK_EVENTCOUNT_H
#define INTERLOCK_EVENTCOUNT_H

#include "platform.h"

typedef struct il_eventcount {
    _Atomic uint32_t seq;
    _Atomic uint32_t waiters;
    uint8_t _pad[IL_CACHELINE - 8];
} il_eventcount_t;

static inline uint32_t il_ec_prepare(il_eventcount_t *ec)
{
    /* seq_cst RMW + fence: the Dekker pair with the notifier's fence. */
    atomic_fetch_add_explicit(&ec->waiters, 1, memory_order_seq_cst);
    atomic_thread_fence(memory_order_seq_cst);
    /* acquire: pairs with the notifier's release increment, so a waiter that
     * sees the new seq also sees the change published before it. */
    return atomic_load_explicit(&ec->seq, memory_order_acquire);
}

static inline void il_ec_cancel(il_eventcount_t *ec)
{
    /* relaxed: only a hint to notifiers; a late decrement costs one wake. */
    atomic_fetch_sub_explicit(&ec->waiters, 1, memory_order_relaxed);
}

/* Sleep at most timeout_ns while seq == key.  Always call il_ec_cancel after. */
static inline int il_ec_sleep(il_eventcount_t *ec, uint32_t key, int64_t timeout_ns)
{
    return il_futex_wait(&ec->seq, key, timeout_ns);
}

/* Call right after publishing a change with a store. */
static inline void il_ec_notify(il_eventcount_t *ec, int n)
{
    /* seq_cst fence: orders our publishing store before the waiters load
     * (store->load order is the one thing release/acquire does not give). */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&ec->waiters, memory_order_relaxed) != 0) {
        /* release: a waiter that reads this seq sees the published change. */
        atomic_fetch_add_explicit(&ec->seq, 1, memory_order_release);
        il_futex_wake(&ec->seq, n);
    }
}

#endif
