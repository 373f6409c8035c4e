/*
 * aio.c -- one sleep for every pending asyncio wait of a process.
 *
 * interlock.aio keeps, per process, ONE helper thread while (and only while)
 * some coroutine awaits a queue, a lock or an event; none otherwise.  The
 * thread calls _aio_wait(targets, bell): for each target it does what a
 * blocking waiter does before sleeping (an eventcount's prepare, or setting
 * a mutex's WAITERS bit), checks the condition, and then sleeps in ONE
 * futex_waitv(2) (Linux >= 5.16) on every target's futex word plus the
 * process's own `doorbell` word, with no timeout.  It returns when a target
 * was woken (or its word had already moved), or when Python rang the
 * doorbell because the set of targets changed (a new await, a cancelled
 * one, a detach).  So an idle process with pending awaits makes no syscall
 * and no wake-up at all until something happens: no slices, no polling.
 *
 * Why not the alternatives (docs/design/aio.md): an fd per object for the
 * event loop to watch would need every waker, in any process, to know our
 * fds (futexes cannot be registered with epoll); a thread per object (the
 * previous design) needs a timed slice to notice that its waiters left, and
 * lingers, so that fork() warns about threads on Python >= 3.12.
 *
 * Waking without losing a wake-up: the notifiers (ring put/get, Event.set,
 * mutex unlock) are unchanged, and they wake only as many sleepers as they
 * need (a put of one item wakes one, an unlock wakes one).  If the one they
 * wake is this helper and the coroutine behind it then does not take what
 * the wake was for (it was cancelled, or the lock's slow-path acquirers in
 * other processes are also asleep), the wake must go on to another
 * sleeper: _aio_pass_on() for the first case, and for a mutex this file
 * passes it on by itself with il_mutex_wait_unlocked's rule (invariant L6
 * of docs/design/lock.md).  An extra wake is always harmless (every
 * sleeper re-checks its condition).
 *
 * What this cannot see: the death of a lock's owner does not change the
 * lock word, so interlock.aio watches the owner with a pidfd in the event
 * loop (the blocking API re-checks every 50 ms instead).  A notifier killed
 * between its publish and its wake leaves the waiters asleep until the next
 * notify (the blocking API's slice bounds that to 100 ms).
 */
#define _GNU_SOURCE
#include "aio.h"

#include <errno.h>
#include <limits.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mutex.h"
#include "ring.h"
#include "sync.h"

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449 /* the same number on every architecture (asm-generic) */
#endif
#define IL_FUTEX2_SIZE_U32 0x02 /* <linux/futex.h> FUTEX2_SIZE_U32, missing from old headers */
#define IL_WAITV_MAX 128        /* the kernel's FUTEX_WAITV_MAX */
#define IL_AIO_FALLBACK_NS 20000000LL

struct il_futex_waitv { /* <linux/futex.h> struct futex_waitv, missing from old headers */
    uint64_t val;
    uint64_t uaddr;
    uint32_t flags;
    uint32_t reserved;
};

/* Rung (incremented, then woken) by Python when the helper must look at its
 * targets again.  Process-private memory; futex calls without
 * FUTEX_PRIVATE_FLAG work on it too, and wait and wake must agree. */
static _Atomic uint32_t doorbell;

typedef il_aio_target_t target_t;

static int ready_now(target_t *t)
{
    void *p = t->p;
    switch (t->kind) {
    case AIO_READABLE:
        return il_ring_readable((il_ring_t *)p);
    case AIO_WRITABLE:
        return il_ring_writable((il_ring_t *)p, t->arg);
    case AIO_SET:
        /* acquire: pairs with Event.set's release CAS.  arg: the generation
         * the coroutine began waiting at (a set-then-clear since moved it) */
        return il_event_done(atomic_load_explicit(&((il_event_t *)p)->state, memory_order_acquire),
                             (uint32_t)t->arg);
    default: {
        /* relaxed: the coroutine then takes the lock with its own CAS */
        uint32_t owner = il_mutex_owner((il_mutex_t *)p);
        return owner == 0 || (t->arg != 0 && owner != t->arg);
    }
    }
}

/* Prepare to sleep on t, as the blocking waiter of its kind would. */
static void arm(target_t *t)
{
    void *p = t->p;
    t->ec = NULL;
    if (t->kind == AIO_UNLOCKED) {
        il_mutex_t *m = (il_mutex_t *)p;
        for (;;) {
            /* relaxed: as in il_mutex_wait_unlocked; the futex syscall
             * orders our sleep against the unlocker's exchange */
            uint32_t v = atomic_load_explicit(&m->word, memory_order_relaxed);
            uint32_t owner = v & IL_MUTEX_TID_MASK;
            if (owner == 0 || (t->arg != 0 && owner != t->arg)) {
                t->ready = 1;
                return;
            }
            /* Ask the unlocker for a wake (mutex.h: a stale bit costs one
             * useless wake, never a lost one).  relaxed: the bit carries no data. */
            if (!(v & IL_MUTEX_WAITERS) &&
                !atomic_compare_exchange_weak_explicit(&m->word, &v, v | IL_MUTEX_WAITERS,
                                                       memory_order_relaxed,
                                                       memory_order_relaxed))
                continue;
            t->word = &m->word;
            t->val = v | IL_MUTEX_WAITERS;
            t->ready = 0;
            return;
        }
    }
    if (t->kind == AIO_SET)
        t->ec = &((il_event_t *)p)->h.ec;
    else if (t->kind == AIO_READABLE)
        t->ec = &((il_ring_t *)p)->not_empty;
    else
        t->ec = &((il_ring_t *)p)->not_full;
    /* Counted in ec before the check (eventcount.h): a notifier that
     * publishes after our check sees us and bumps seq past `val`. */
    t->val = il_ec_prepare(t->ec);
    t->word = &t->ec->seq;
    t->ready = ready_now(t);
    /* A ring's notifier wakes only armed sleepers (eventcount.h, the armed
     * variant): arm, or, if seq moved meanwhile, go back and check again. */
    if (!t->ready && t->kind != AIO_SET && !il_ec_arm(t->ec, &t->val))
        t->ready = 1;
}

static void disarm(target_t *t)
{
    if (t->ec)
        il_ec_cancel(t->ec);
    t->ec = NULL;
    t->ready = ready_now(t);
}

/* Sleep until a target's word moves or the doorbell rings.  Returns the
 * index of the word whose FUTEX_WAKE woke us (n = the doorbell), or -1. */
static int sleep_on(target_t *ts, int n, uint32_t bell, int *fallback)
{
    struct il_futex_waitv w[IL_WAITV_MAX];
    int k = n < IL_WAITV_MAX - 1 ? n : IL_WAITV_MAX - 1;
    for (int i = 0; i < k; i++) {
        w[i].val = ts[i].val;
        w[i].uaddr = (uint64_t)(uintptr_t)ts[i].word;
        w[i].flags = IL_FUTEX2_SIZE_U32;
        w[i].reserved = 0;
    }
    w[k].val = bell;
    w[k].uaddr = (uint64_t)(uintptr_t)&doorbell;
    w[k].flags = IL_FUTEX2_SIZE_U32;
    w[k].reserved = 0;
    long r = -1;
    if (!*fallback && k == n) {
        /* no timeout: only a wake, a moved word, or a signal ends it */
        r = syscall(SYS_futex_waitv, w, (unsigned)(k + 1), 0u, NULL, CLOCK_MONOTONIC);
        if (r >= 0)
            return r == k ? n : (int)r;
        if (errno != ENOSYS)
            return -1; /* EAGAIN (a word moved), EINTR */
        *fallback = 1;
    }
    /* No futex_waitv (Linux < 5.16), or more targets than it takes: sleep on
     * the doorbell in slices and re-check every target after each
     * (docs/design/aio.md: the one case that polls, and says so). */
    il_futex_wait(&doorbell, bell, IL_AIO_FALLBACK_NS);
    return -1;
}

int il_aio_wait(il_aio_target_t *ts, int n, uint32_t bell)
{
    int woken = -1;
    static int fallback; /* futex_waitv missing: found once per process */
    int any = 0;
    for (int i = 0; i < n; i++) {
        arm(&ts[i]);
        any |= ts[i].ready;
    }
    /* acquire: pairs with _aio_ring's release increment (the target set
     * Python changed before ringing is the one it will hand us next) */
    if (!any && n > 0 && atomic_load_explicit(&doorbell, memory_order_acquire) == bell)
        woken = sleep_on(ts, (int)n, bell, &fallback);
    for (int i = 0; i < n; i++)
        disarm(&ts[i]);
    if (woken >= 0 && woken < n && ts[woken].kind == AIO_UNLOCKED) {
        /* A wake-up on the lock word (a release wakes ONE sleeper: us).  Our
         * coroutine retries (it may also be an owner-death hint: Mutex
         * _abandon wakes), and the wake-up goes on as in
         * il_mutex_wait_unlocked (invariant L6, docs/design/lock.md): word
         * free: wake one more sleeper, who takes it with WAITERS or re-arms;
         * held without WAITERS: set the bit, so the holder's release wakes
         * the next; held with it: that release will.  Never a wake between
         * helpers while the lock is held, so no ping-pong. */
        il_mutex_t *m = (il_mutex_t *)ts[woken].p;
        ts[woken].ready = 1;
        for (;;) {
            /* relaxed: as in arm() */
            uint32_t v = atomic_load_explicit(&m->word, memory_order_relaxed);
            if ((v & IL_MUTEX_TID_MASK) == 0) {
                il_futex_wake(&m->word, 1);
                break;
            }
            if ((v & IL_MUTEX_WAITERS) ||
                atomic_compare_exchange_weak_explicit(&m->word, &v, v | IL_MUTEX_WAITERS,
                                                      memory_order_relaxed, memory_order_relaxed))
                break;
        }
    }
    return woken;
}

uint32_t il_aio_bell(void)
{
    /* acquire: pairs with il_aio_ring's release increment (the target set
     * Python changed before ringing is the one it will hand us next) */
    return atomic_load_explicit(&doorbell, memory_order_acquire);
}

void il_aio_ring(void)
{
    /* release: the helper that reads the new value sees the target set
     * changed before (Python's lock orders it too; this is for the word) */
    atomic_fetch_add_explicit(&doorbell, 1, memory_order_release);
    il_futex_wake(&doorbell, INT_MAX);
}

void il_aio_pass_on(void *p, int kind)
{
    if (kind == AIO_UNLOCKED)
        il_futex_wake(&((il_mutex_t *)p)->word, 1);
    else if (kind == AIO_READABLE)
        il_futex_wake(&((il_ring_t *)p)->not_empty.seq, 1);
    else if (kind == AIO_WRITABLE)
        il_futex_wake(&((il_ring_t *)p)->not_full.seq, 1);
    /* AIO_SET: Event.set wakes everyone; nothing was taken from anybody */
}
