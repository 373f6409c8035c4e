/*
 * sync.h -- robust process-shared Semaphore, RWLock, Event, Barrier and
 * Condition: the raw state machines (the Python types are in bind_sync.c and bind_<type>.c,
 * the design note is docs/design/sync.md).
 *
 * One pattern for all five.  Each object is a fixed-size header followed by
 * a table of `nslots` slots (who holds what, who waits for what):
 *
 *   line 0  guard: a robust il_mutex (mutex.h) that serialises every change
 *           of the state below; held for a few hundred nanoseconds, never
 *           across a sleep.
 *   line 1  ec: an eventcount (eventcount.h) that sleepers wait on; every
 *           change that may let a sleeper proceed is followed by a notify.
 *   line 2  redo log + statistics (written under the guard)
 *   line 3  the primitive's own state words (written under the guard)
 *   then    slots[nslots], 32 bytes each
 *
 * Why a guard and not a lock-free word per primitive: the holder tables that
 * make recovery possible (which process holds how many units) must change
 * together with the counters, and a single CAS cannot cover both.  An
 * uncontended guard costs one CAS and one exchange: the same as a lock-free
 * semaphore's single CAS plus a wake check.
 *
 * Death inside the guard.  The guard is robust: the next thread to lock it
 * takes it over within one slice (50 ms) and gets IL_OWNER_DIED.  The state
 * it inherits must be consistent, so every multi-word change is a *redo
 * log*: the new values are written to the log with their offsets, the log is
 * published by storing its length (release), the values are applied, and the
 * length is cleared (release).  Whoever takes the guard over from a dead
 * owner applies a published log again (applying absolute values twice is
 * harmless) and clears it.  So a change is either wholly done or not done at
 * all, whatever instruction the owner died at.  Writes that are harmless on
 * their own (claiming a free slot's pid before any count refers to it) are
 * plain stores before the log.
 *
 * Death while holding (outside the guard).  Holders are recorded in slots:
 *   Semaphore: per *process* (pid + process start time): units taken and not
 *              given back; any thread of the process may release them.
 *   RWLock:    readers per process (like Semaphore); the writer per *thread*
 *              (tid + thread start time), in the state line.
 *   Barrier/Condition: waiters per thread.
 * Waiters sleep in slices of IL_SYNC_SLICE_NS and, at least once per slice,
 * sweep the table under the guard: a slot whose task is gone (il_task_alive:
 * /proc, zombie-aware, start time against PID reuse) is recovered --
 * Semaphore/RWLock units go back, a dead writer's hold is dropped, a dead
 * Barrier party breaks the barrier, a dead Condition waiter is forgotten.
 * The recovered units are counted in `recovered` and the next thread that
 * takes one is told (IL_OWNER_DIED + the dead pid), like Lock.
 *
 * Memory order.  Every field below the guard is an _Atomic read and written
 * with memory_order_relaxed *under the guard*: the guard's acquire-CAS and
 * release-exchange order them between holders.  They are atomics only
 * because statistics() and the waiters' quick checks read them without the
 * guard (a racy snapshot is all those need).  Stores of a process that died
 * are visible to everyone once it is dead (its exit is a full barrier in the
 * kernel), which is what the takeover relies on.
 */
#ifndef INTERLOCK_SYNC_H
#define INTERLOCK_SYNC_H

#include "crashpoint.h"
#include "eventcount.h"
#include "mutex.h"

#define IL_SYNC_SLICE_NS 100000000LL /* 100 ms between liveness sweeps */
#define IL_SYNC_REDO_MAX 5
#define IL_SYNC_MAX_SLOTS 4096

/* Results of the raw operations, beside platform.h's IL_OK .. IL_OWNER_DIED. */
enum {
    IL_WAIT = 16,     /* cannot proceed: sleep on ec with the key returned */
    IL_BROKEN = 17,   /* Barrier broken / reset */
    IL_OVERFLOW = 18, /* BoundedSemaphore released too many times; table full */
};

enum { IL_SYNC_SEMAPHORE = 1, IL_SYNC_RWLOCK, IL_SYNC_EVENT, IL_SYNC_BARRIER, IL_SYNC_CONDITION };

/*
 * A slot (32 bytes).  pid == 0: free.  Claimed by plain stores of pid, tid,
 * start under the guard *before* any count or state refers to it, so a
 * death halfway leaves a slot with count 0 that the next sweep frees.
 *
 *   kind       pid   tid        start          count              state
 *   Semaphore  proc  0          process start  units held         -
 *   (dead)     dead  0          its start      reports left       RECOVERED
 *   RWLock     proc  0          process start  read holds         -
 *   Barrier    proc  thread     thread start   generation         WAITING/PASSED/BROKEN
 *   Condition  proc  thread     thread start   ticket (FIFO)      WAITING/NOTIFIED
 *   RWLock writers waiting use slots too: tid != 0, state WRITER_WAITING.
 */
typedef struct il_sync_slot {
    _Atomic uint32_t pid;
    _Atomic uint32_t tid;
    _Atomic uint32_t count;
    _Atomic uint32_t state;
    _Atomic uint64_t start;
    uint64_t _pad;
} il_sync_slot_t;

enum {
    IL_SLOT_IDLE = 0,
    IL_SLOT_WAITING = 1,
    IL_SLOT_PASSED = 2,   /* Barrier: its generation was released */
    IL_SLOT_BROKEN = 3,   /* Barrier: broken or reset while waiting */
    IL_SLOT_NOTIFIED = 4, /* Condition: chosen by notify() */
    IL_SLOT_WRITER_WAITING = 5,
    /* Semaphore: a dead process's units, already returned to `value` by a
     * sweep, whose takers have not all been told yet.  pid = the dead
     * process, count = takers still to tell (each is told this pid).  Not a
     * holder: statistics skip it.  Freed when count reaches 0. */
    IL_SLOT_RECOVERED = 6,
};

/*
 * The header common to every primitive (three cache lines).
 *
 * redo_n: 0 = no change in flight; k in 1..IL_SYNC_REDO_MAX = the k
 * (offset, value) pairs are complete and must be (re)applied.  Stored with
 * release after the pairs, so a compiler or CPU cannot publish it first.
 */
typedef struct il_sync_head {
    il_mutex_t guard;
    il_eventcount_t ec;
    /* line 2 */
    _Atomic uint32_t redo_n;
    uint32_t redo_off[IL_SYNC_REDO_MAX]; /* byte offsets from the object's start */
    uint32_t redo_val[IL_SYNC_REDO_MAX];
    uint16_t kind;     /* IL_SYNC_*, written once at init */
    uint16_t _r0;
    uint32_t nslots;   /* written once at init */
    _Atomic uint32_t recovered; /* units/holds taken back from the dead, not yet reported */
    _Atomic uint32_t dead_pid;  /* the last dead holder (reported with `recovered`) */
    uint32_t _pad2;
    /* line 3: statistics, relaxed */
    _Atomic uint64_t acquisitions;
    _Atomic uint64_t contentions;
    _Atomic uint64_t timeouts;
    _Atomic uint64_t last_sweep_ns; /* CLOCK_MONOTONIC of the last sweep: rate limit */
    _Atomic uint32_t owner_deaths;
    _Atomic uint32_t sleepers; /* threads in a slow-path wait right now */
    uint8_t _pad3[IL_CACHELINE - 40];
} il_sync_head_t;

_Static_assert(sizeof(il_sync_head_t) == 4 * IL_CACHELINE, "sync head is four lines");

/*
 * Semaphore state.
 *   value      units free right now
 *   maxvalue   BoundedSemaphore's bound; UINT32_MAX for Semaphore
 *   untracked  units held without a slot (table full): cannot be recovered
 *   invariant (bounded, nobody dead): value + sum(slot.count) + untracked <= maxvalue
 */
typedef struct il_sem {
    il_sync_head_t h;
    _Atomic uint32_t value;
    uint32_t maxvalue;
    _Atomic uint32_t untracked;
    uint8_t _pad[IL_CACHELINE - 12];
    il_sync_slot_t slots[];
} il_sem_t;

/*
 * RWLock state (writer-preferring: a reader waits while a writer holds or
 * waits, unless its process already holds a read -- that would deadlock).
 *   readers            total read holds (sum of slot counts + untracked)
 *   writer_tid         0: no writer; else the writing thread
 *   writer_pid/start   of writer_tid (start: thread start time)
 *   writers_waiting    slots in state WRITER_WAITING (recomputed by sweeps)
 *
 *   readers  writer_tid  meaning
 *   0        0           free
 *   n > 0    0           n read holds
 *   0        T           written by T
 *   n > 0    T           never (a writer takes the lock only at readers == 0)
 */
typedef struct il_rwlock {
    il_sync_head_t h;
    _Atomic uint32_t readers;
    _Atomic uint32_t writer_tid;
    _Atomic uint32_t writer_pid;
    _Atomic uint32_t writers_waiting;
    _Atomic uint64_t writer_start;
    _Atomic uint32_t untracked;
    _Atomic uint32_t write_acquisitions;
    uint8_t _pad[IL_CACHELINE - 32];
    il_sync_slot_t slots[];
} il_rwlock_t;

/*
 * Event state: one 64-bit word, so that set() changes the flag and the
 * generation together (one CAS: a setter killed at any instruction has
 * either set the event wholly or not at all).
 *
 *   bit 0        flag: 0 clear, 1 set
 *   bits 1..31   always 0
 *   bits 32..63  generation: the number of set() calls (mod 2^32)
 *
 * Little-endian (x86_64, aarch64: the static assert below), the low half is
 * the u32 that layout version 3 called `flag` and the high half its `sets`,
 * so the word reads the same to every interlock of this layout version.
 *
 *   flag gen   meaning for a waiter that read generation g0 when it began
 *   1    any   set: return True
 *   0    g0    not set since it began: sleep
 *   0    != g0 set, then cleared, after it began: return True (threading's
 *                rule, gh-57711: every thread waiting when set() was called
 *                wakes with True even if clear() follows at once)
 *
 * set(): CAS old -> (old | 1) + 2^32, release; then il_ec_notify.
 * clear(): fetch_and(~1); the generation stays.
 * No guard: an Event holds nothing, so a death can strand nobody.
 */
#define IL_EVENT_FLAG 1ull
#define IL_EVENT_GEN_ONE (1ull << 32)
typedef struct il_event {
    il_sync_head_t h;
    _Atomic uint64_t state;
    uint8_t _pad[IL_CACHELINE - 8];
} il_event_t;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "il_event_t.state: the flag must be the low u32 (layout version 3)"
#endif

static inline uint32_t il_event_gen(uint64_t state)
{
    return (uint32_t)(state >> 32);
}

/* True if a waiter that began at generation g0 may return True now. */
static inline int il_event_done(uint64_t state, uint32_t g0)
{
    return (state & IL_EVENT_FLAG) || il_event_gen(state) != g0;
}

/* Set the flag and bump the generation in one CAS; the caller then wakes
 * the sleepers (il_ec_notify).  Returns the new state. */
static inline uint64_t il_event_set(il_event_t *e)
{
    /* relaxed load: only the CAS's expected value */
    uint64_t old = atomic_load_explicit(&e->state, memory_order_relaxed);
    /* release on success: pairs with the waiters' acquire loads, so what the
     * setter wrote before set() is visible to a waiter that returns True.
     * relaxed on failure: we retry with the value read. */
    while (!atomic_compare_exchange_weak_explicit(&e->state, &old,
                                                  (old | IL_EVENT_FLAG) + IL_EVENT_GEN_ONE,
                                                  memory_order_release, memory_order_relaxed))
        ;
    return (old | IL_EVENT_FLAG) + IL_EVENT_GEN_ONE;
}

static inline void il_event_clear(il_event_t *e)
{
    /* relaxed: clearing publishes nothing; one RMW on the same word as set's
     * CAS, so the two are ordered in the word's modification order and a
     * clear never undoes a generation bump. */
    atomic_fetch_and_explicit(&e->state, ~IL_EVENT_FLAG, memory_order_relaxed);
}

/*
 * Barrier state.
 *   parties   fixed at init
 *   count     parties arrived in the current generation (0..parties)
 *   gen       generation: +1 each time the barrier passes or is reset
 *   broken    0/1: while 1, wait() raises BrokenBarrierError at once
 *
 *   count < parties, broken 0   filling
 *   count == parties            the last party runs the action; then
 *                               release: every WAITING slot of gen -> PASSED,
 *                               gen += 1, count = 0
 *   broken 1                    every WAITING slot -> BROKEN; count = 0 as
 *                               the waiters leave
 */
typedef struct il_barrier {
    il_sync_head_t h;
    uint32_t parties;
    _Atomic uint32_t count;
    _Atomic uint32_t gen;
    _Atomic uint32_t broken;
    _Atomic uint32_t passes;
    uint8_t _pad[IL_CACHELINE - 20];
    il_sync_slot_t slots[];
} il_barrier_t;

/*
 * Condition state (the user's lock lives in its own segment; only its name
 * is here, so that a process attaching by name finds it).
 *   ticket     next waiter ticket (FIFO order of notify)
 *   notifies   statistics
 *   Waiter slot: WAITING (ticket) -> NOTIFIED by notify() -> freed by the
 *   waiter itself; or freed by the waiter on timeout; or freed by a sweep
 *   if the waiter died.
 */
typedef struct il_condition {
    il_sync_head_t h;
    _Atomic uint32_t ticket;
    _Atomic uint32_t notifies;
    uint32_t lock_recursive;
    uint8_t _pad[IL_CACHELINE - 12];
    char lock_name[256];
    il_sync_slot_t slots[];
} il_condition_t;

/* ---------------------------------------------------------------- common */

size_t il_sync_size(int kind, uint32_t nslots);
void il_sync_init(il_sync_head_t *h, int kind, uint32_t nslots);
static inline il_sync_slot_t *il_sync_slots(il_sync_head_t *h)
{
    switch (h->kind) {
    case IL_SYNC_SEMAPHORE: return ((il_sem_t *)h)->slots;
    case IL_SYNC_RWLOCK: return ((il_rwlock_t *)h)->slots;
    case IL_SYNC_BARRIER: return ((il_barrier_t *)h)->slots;
    case IL_SYNC_CONDITION: return ((il_condition_t *)h)->slots;
    default: return NULL;
    }
}

/* The calling process's start time (cached per process). */
uint64_t il_self_proc_start(void);

/* Take the guard with no deadline, repairing after a dead owner.  Never
 * returns an error: IL_INTR is retried (the guard is held only briefly). */
void il_sync_guard_lock(il_sync_head_t *h);
static inline int il_sync_guard_trylock(il_sync_head_t *h);
static inline void il_sync_guard_unlock(il_sync_head_t *h) { il_mutex_unlock(&h->guard); }

/* A change under construction (caller's stack), committed by il_sync_commit. */
typedef struct il_redo {
    uint32_t n;
    uint32_t off[IL_SYNC_REDO_MAX];
    uint32_t val[IL_SYNC_REDO_MAX];
} il_redo_t;
#define IL_REDO_SET(r, h, field, v)                                                 \
    do {                                                                             \
        (r)->off[(r)->n] = (uint32_t)((char *)&(field) - (char *)(h));               \
        (r)->val[(r)->n] = (uint32_t)(v);                                            \
        (r)->n++;                                                                    \
    } while (0)
void il_sync_commit(il_sync_head_t *h, const il_redo_t *r);

/* Under the guard: the slot of the calling process (per-process tables) or
 * thread (per-thread), or a claimed free one; NULL if the table is full.
 * `hint` caches the index between calls (verified before use). */
il_sync_slot_t *il_sync_proc_slot(il_sync_head_t *h, int claim, uint32_t *hint);
il_sync_slot_t *il_sync_thread_slot(il_sync_head_t *h, uint32_t state);

static inline int il_sync_guard_trylock(il_sync_head_t *h)
{
    if (il_mutex_trylock(&h->guard, il_self_tid())) {
        IL_CRASH(SYNC_GUARD_LOCKED);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------ the state machines
 * All of these run under the guard.  Those that may have to wait return
 * IL_WAIT with *key set (il_ec_prepare was called: the caller unlocks the
 * guard, sleeps with il_ec_sleep, then calls il_ec_cancel). */

/* Semaphore: take one unit.  IL_OK, IL_OWNER_DIED (taken; *dead = the dead
 * holder whose units were recovered), IL_WAIT (if may_wait) or IL_TIMEDOUT. */
int il_sem_try_acquire(il_sem_t *s, uint32_t *hint, int may_wait, uint32_t *key, uint32_t *dead);
/* Give back n units.  IL_OK or IL_OVERFLOW (bounded, beyond the bound). */
int il_sem_release(il_sem_t *s, uint32_t n, uint32_t *hint);

/* Sweep: recover what dead tasks hold.  Returns how many slots were freed. */
int il_sync_sweep(il_sync_head_t *h);

int il_rw_try_read(il_rwlock_t *l, uint32_t *hint, int may_wait, uint32_t *key, uint32_t *dead);
int il_rw_release_read(il_rwlock_t *l, uint32_t *hint); /* IL_OK or IL_PERM */
/* Writer: `waiting` is the caller's WRITER_WAITING slot (NULL until it
 * first has to wait; the function claims it and hands it back). */
int il_rw_try_write(il_rwlock_t *l, il_sync_slot_t **waiting, int may_wait, uint32_t *key,
                    uint32_t *dead);
void il_rw_cancel_write(il_rwlock_t *l, il_sync_slot_t *waiting);
int il_rw_release_write(il_rwlock_t *l); /* IL_OK or IL_PERM */

/* Barrier: arrive (returns IL_OK with *index, *slot; IL_BROKEN; or
 * IL_OVERFLOW when the table is full). */
int il_barrier_arrive(il_barrier_t *b, uint32_t *index, il_sync_slot_t **slot);
/* After the last party ran the action: release the generation. */
void il_barrier_pass(il_barrier_t *b, il_sync_slot_t *slot);
/* Break (abort, a timeout, a failed action): every waiter gets IL_BROKEN. */
void il_barrier_break(il_barrier_t *b);
void il_barrier_reset(il_barrier_t *b);
/* A waiter's check: IL_OK passed (slot freed), IL_BROKEN (slot freed) or
 * IL_WAIT (key set). */
int il_barrier_check(il_barrier_t *b, il_sync_slot_t *slot, uint32_t *key);
/* Leave on timeout or signal: breaks the barrier (threading's rule). */
void il_barrier_leave(il_barrier_t *b, il_sync_slot_t *slot);

/* Condition: register a waiter (NULL: table full). */
il_sync_slot_t *il_cond_enter(il_condition_t *c);
/* IL_OK notified, IL_WAIT (key set). */
int il_cond_check(il_condition_t *c, il_sync_slot_t *slot, uint32_t *key);
/* Free the slot; returns 1 if it had been notified. */
int il_cond_leave(il_condition_t *c, il_sync_slot_t *slot);
/* Mark up to n live waiters (oldest first) notified; returns how many. */
uint32_t il_cond_notify(il_condition_t *c, uint32_t n);

#endif
