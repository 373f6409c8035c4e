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
 * Death: a waiter killed while counted would leave `waiters` one too high
 * for good, and every notifier would then make a useless FUTEX_WAKE per
 * publish (measured: put/get throughput halved; never wrong).  So a waiter
 * also writes who it is ((start time & 0xffffffff) << 32 | tid, as the
 * mutex's hint) into a free one of IL_EC_SLOTS `sleeper` slots, and clears
 * it in il_ec_cancel before its decrement.  il_ec_repair, run off the fast
 * path (by a waiter whose sleep slice ran out, or by a notifier after many
 * wakes that woke nobody), frees the slots of dead waiters with a CAS and
 * decrements `waiters` for each: exactly the cancel the dead one did not
 * make.  Live waiters are never touched, so the wake protocol above is
 * unchanged.  Not repaired: a waiter killed in the instants between its
 * increment and its slot claim, or between its slot release and its
 * decrement, or one that found all slots taken.
 * A notifier killed between its publish and its wake delays sleepers by at
 * most one slice: every sleep is bounded by the caller's slice.
 */
#ifndef INTERLOCK_EVENTCOUNT_H
#define INTERLOCK_EVENTCOUNT_H

#include "platform.h"

#define IL_EC_SLOTS 6

typedef struct il_eventcount {
    _Atomic uint32_t seq;
    _Atomic uint32_t waiters;
    _Atomic uint64_t sleeper[IL_EC_SLOTS]; /* 0 = free, else (start & 0xffffffff) << 32 | tid */
    uint8_t _pad[IL_CACHELINE - 8 - 8 * IL_EC_SLOTS];
} il_eventcount_t;

_Static_assert(sizeof(il_eventcount_t) == IL_CACHELINE, "one eventcount, one cache line");

static inline uint64_t il_ec_me(void)
{
    return (il_self_start() & 0xffffffffu) << 32 | il_self_tid();
}

static inline uint32_t il_ec_prepare(il_eventcount_t *ec)
{
    /* seq_cst RMW + fence: the Dekker pair with the notifier's fence. */
    atomic_fetch_add_explicit(&ec->waiters, 1, memory_order_seq_cst);
    /* relaxed: the slot only tells il_ec_repair who is counted (see above) */
    uint64_t me = il_ec_me();
    for (int i = 0; i < IL_EC_SLOTS; i++) {
        uint64_t free_ = 0;
        if (atomic_compare_exchange_strong_explicit(&ec->sleeper[i], &free_, me,
                                                    memory_order_relaxed, memory_order_relaxed))
            break;
    }
    atomic_thread_fence(memory_order_seq_cst);
    /* acquire: pairs with the notifier's release increment, so a waiter that
     * sees the new seq also sees the change published before it. */
    return atomic_load_explicit(&ec->seq, memory_order_acquire);
}

static inline void il_ec_cancel(il_eventcount_t *ec)
{
    /* Release our slot first, then uncount: a repairer can only take a slot
     * whose owner is dead, so it never uncounts us a second time. */
    uint64_t me = il_ec_me();
    for (int i = 0; i < IL_EC_SLOTS; i++) {
        uint64_t v = me;
        /* relaxed: as in prepare */
        if (atomic_compare_exchange_strong_explicit(&ec->sleeper[i], &v, 0, memory_order_relaxed,
                                                    memory_order_relaxed))
            break;
    }
    /* relaxed: only a hint to notifiers; a late decrement costs one wake. */
    atomic_fetch_sub_explicit(&ec->waiters, 1, memory_order_relaxed);
}

/* Uncount the waiters that died counted (see above).  Reads /proc for each
 * occupied slot: call it off the fast path.  Returns how many it repaired. */
static inline int il_ec_repair(il_eventcount_t *ec)
{
    int n = 0;
    for (int i = 0; i < IL_EC_SLOTS; i++) {
        /* relaxed: as in prepare; the CAS below settles any race */
        uint64_t v = atomic_load_explicit(&ec->sleeper[i], memory_order_relaxed);
        if (v && !il_task_alive((uint32_t)v, v >> 32) &&
            atomic_compare_exchange_strong_explicit(&ec->sleeper[i], &v, 0, memory_order_relaxed,
                                                    memory_order_relaxed)) {
            atomic_fetch_sub_explicit(&ec->waiters, 1, memory_order_relaxed);
            n++;
        }
    }
    return n;
}

/* Sleep at most timeout_ns while seq == key.  Always call il_ec_cancel after. */
static inline int il_ec_sleep(il_eventcount_t *ec, uint32_t key, int64_t timeout_ns)
{
    return il_futex_wait(&ec->seq, key, timeout_ns);
}

/* Call right after publishing a change with a store.  Returns how many
 * sleepers FUTEX_WAKE woke, or -1 if nobody was counted (no syscall). */
static inline int il_ec_notify(il_eventcount_t *ec, int n)
{
    /* seq_cst fence: orders our publishing store before the waiters load
     * (store->load order is the one thing release/acquire does not give). */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&ec->waiters, memory_order_relaxed) != 0) {
        /* release: a waiter that reads this seq sees the published change. */
        atomic_fetch_add_explicit(&ec->seq, 1, memory_order_release);
        return il_futex_wake(&ec->seq, n);
    }
    return -1;
}

/*
 * The armed variant (the ring's not_empty and not_full; docs/design/queue.md,
 * "Waking only sleepers").  With more processes than CPUs, a woken waiter
 * stays counted in `waiters` until it runs again, which may be milliseconds
 * later; until then every notify made a FUTEX_WAKE that woke nobody: 8
 * producers and 8 consumers on 2 CPUs made 1.5 such syscalls per item.
 * So bit 0 of `seq` says that a waiter may be asleep on the current value
 * ("armed"); the rest of seq is the epoch, which a notify moves on.
 *
 *   waiter                                notifier
 *   waiters += 1; fence(seq_cst)          publish the change (store)
 *   s = seq               (acquire)       fence(seq_cst)
 *   if condition: cancel; done            if waiters > 0:
 *   if !(s & 1):                              old = seq; seq = old + 2
 *      CAS seq s -> s | 1                     if old & 1:
 *      (fails: seq moved; check again)           w = futex_wake(&seq, n)
 *   futex_wait(&seq, s | 1, slice)               if w == 0:
 *   cancel                                           FUTEX_WAKE_OP:
 *                                                    seq &= ~1, wake all
 *
 * No lost wake-up: as above, the notifier sees the waiter counted or the
 * waiter sees the change.  If the notifier's move of seq comes before the
 * waiter's arming CAS, the CAS fails (or the FUTEX_WAIT finds seq moved)
 * and the waiter checks again; if after, the notifier finds the bit set and
 * wakes.  The bit stays set while anyone may sleep: a notify keeps it when
 * it moves the epoch, and clears it only when its FUTEX_WAKE found nobody
 * asleep, with one FUTEX_WAKE_OP that clears it and wakes, under the
 * futex's own lock, anyone who fell asleep since; a FUTEX_WAIT after that
 * finds seq changed.  (A plain store there would leave such a sleeper with
 * the bit gone: the model's MUTANT_PLAIN_DISARM.)  So a woken waiter that
 * has not run yet costs at most one more FUTEX_WAKE (which finds nobody)
 * and the disarm, then notifies make no syscall until a waiter arms again.
 * Death changes nothing above: a waiter killed armed leaves a bit that the
 * next notify clears, and `waiters` is repaired as before.
 * (Model: models/eventcount.pml, models/ring.pml.)
 */

/* After il_ec_prepare and a failed check of the condition: arm `*key`
 * (set bit 0 of seq if it is still *key).  1: armed, sleep on *key.  0:
 * seq moved (a notify, or Ring_close): *key is its new value; check the
 * condition again, still counted. */
static inline int il_ec_arm(il_eventcount_t *ec, uint32_t *key)
{
    uint32_t s = *key;
    if (s & 1u)
        return 1;
    /* acquire on failure: a moved seq is a notifier's release CAS, whose
     * change the check must see (on success too, as C11 asks the failure
     * order to be no stronger; the bit itself carries no data). */
    if (atomic_compare_exchange_strong_explicit(&ec->seq, &s, s | 1u, memory_order_acquire,
                                                memory_order_acquire)) {
        *key = s | 1u;
        return 1;
    }
    *key = s;
    return 0;
}

/* il_ec_notify for armed waiters: a FUTEX_WAKE only if one may sleep on
 * the current epoch.  Returns how many it woke, -1 if nobody was counted,
 * or -2 if somebody was but nobody armed (no syscall either way). */
static inline int il_ec_notify_armed(il_eventcount_t *ec, int n)
{
    /* seq_cst fence: as in il_ec_notify */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&ec->waiters, memory_order_relaxed) == 0)
        return -1;
    /* release: a waiter whose CAS or FUTEX_WAIT finds the new epoch sees the
     * published change (its acquire load or failed CAS pairs with this) */
    uint32_t old = atomic_fetch_add_explicit(&ec->seq, 2u, memory_order_release);
    if (!(old & 1u))
        return -2;
    int w = il_futex_wake(&ec->seq, n);
    if (w == 0) /* nobody asleep: disarm (with a wake of anyone since) */
        il_futex_clear_wake_all(&ec->seq, 1u);
    return w;
}

#endif
