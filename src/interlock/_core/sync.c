/* sync.c -- the state machines of Semaphore, RWLock, Event, Barrier and
 * Condition (layouts, state tables and the redo-log protocol: sync.h).
 *
 * Everything here runs under the object's guard unless it says otherwise,
 * so the loads and stores of state words are relaxed: the guard's
 * acquire/release orders them (sync.h, "Memory order").  Relaxed loads and
 * stores are spelt out with the two macros below to keep the code legible.
 */
#include "crashpoint.h"
#include "sync.h"

#include <string.h>

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define ST(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

_Static_assert(sizeof(il_sync_slot_t) == 32, "slot is 32 bytes");
_Static_assert(sizeof(il_sem_t) == 5 * IL_CACHELINE, "semaphore header");
_Static_assert(sizeof(il_rwlock_t) == 5 * IL_CACHELINE, "rwlock header");
_Static_assert(sizeof(il_event_t) == 5 * IL_CACHELINE, "event");
_Static_assert(sizeof(il_barrier_t) == 5 * IL_CACHELINE, "barrier header");
_Static_assert(sizeof(il_condition_t) == 9 * IL_CACHELINE, "condition header");

size_t il_sync_size(int kind, uint32_t nslots)
{
    size_t slots = (size_t)nslots * sizeof(il_sync_slot_t);
    switch (kind) {
    case IL_SYNC_SEMAPHORE: return sizeof(il_sem_t) + slots;
    case IL_SYNC_RWLOCK: return sizeof(il_rwlock_t) + slots;
    case IL_SYNC_EVENT: return sizeof(il_event_t);
    case IL_SYNC_BARRIER: return sizeof(il_barrier_t) + slots;
    case IL_SYNC_CONDITION: return sizeof(il_condition_t) + slots;
    default: return 0;
    }
}

void il_sync_init(il_sync_head_t *h, int kind, uint32_t nslots)
{
    /* Only the creator calls this, on a private file not yet linked to its
     * name (segment.py): nobody else can see the memory yet. */
    memset((void *)h, 0, il_sync_size(kind, kind == IL_SYNC_EVENT ? 0 : nslots));
    il_mutex_init(&h->guard);
    h->kind = (uint16_t)kind;
    h->nslots = kind == IL_SYNC_EVENT ? 0 : nslots;
}

/* Per-process start time (the thread start time of the main thread, whose
 * TID is the PID).  Cached with the pid it belongs to, so that a forked
 * child recomputes it.  relaxed: racing threads compute the same value. */
static _Atomic uint32_t ps_pid;
static _Atomic uint64_t ps_start;

uint64_t il_self_proc_start(void)
{
    uint32_t pid = il_self_pid();
    if (atomic_load_explicit(&ps_pid, memory_order_relaxed) != pid) {
        uint64_t s = 0;
        if (il_task_stat(pid, &s, NULL) != 1 || s == 0)
            s = 1;
        atomic_store_explicit(&ps_start, s, memory_order_relaxed);
        atomic_store_explicit(&ps_pid, pid, memory_order_relaxed);
    }
    return atomic_load_explicit(&ps_start, memory_order_relaxed);
}

/* ------------------------------------------------------------ redo log */

static void redo_apply(il_sync_head_t *h, uint32_t n)
{
    for (uint32_t i = 0; i < n && i < IL_SYNC_REDO_MAX; i++)
        ST(*(_Atomic uint32_t *)((char *)h + h->redo_off[i]), h->redo_val[i]);
}

void il_sync_commit(il_sync_head_t *h, const il_redo_t *r)
{
    for (uint32_t i = 0; i < r->n; i++) {
        h->redo_off[i] = r->off[i];
        h->redo_val[i] = r->val[i];
    }
    /* release: the pairs are written before the log is published -- what a
     * taker-over reads after our death is the complete log or none. */
    atomic_store_explicit(&h->redo_n, r->n, memory_order_release);
    IL_CRASH(SYNC_COMMIT_LOGGED);
    /* release fence: no store of the apply below may be moved (by the
     * compiler or the CPU) before the publication above. */
    atomic_thread_fence(memory_order_release);
    if (r->n > 1) {
        redo_apply(h, 1);
        IL_CRASH(SYNC_COMMIT_APPLYING); /* half applied: recovery re-applies all */
    }
    redo_apply(h, r->n);
    IL_CRASH(SYNC_COMMIT_APPLIED);
    /* release: the applied values precede the log's retirement. */
    atomic_store_explicit(&h->redo_n, 0, memory_order_release);
}

void il_sync_guard_lock(il_sync_head_t *h)
{
    for (;;) {
        uint32_t dead = 0;
        int r = il_mutex_lock(&h->guard, IL_FOREVER, &dead);
        if (r == IL_OK) {
            IL_CRASH(SYNC_GUARD_LOCKED);
            return;
        }
        if (r == IL_OWNER_DIED) {
            /* acquire: pairs with the release publication in commit (for a
             * writer that died, its stores are all visible anyway). */
            uint32_t n = atomic_load_explicit(&h->redo_n, memory_order_acquire);
            if (n) {
                redo_apply(h, n);
                atomic_store_explicit(&h->redo_n, 0, memory_order_release);
            }
            return;
        }
        /* IL_INTR: a signal; the guard is held for microseconds, retry. */
    }
}

/* ---------------------------------------------------------------- slots */

static void slot_free(il_sync_slot_t *s)
{
    ST(s->state, IL_SLOT_IDLE);
    ST(s->count, 0);
    ST(s->tid, 0);
    ST(s->pid, 0);
}

il_sync_slot_t *il_sync_proc_slot(il_sync_head_t *h, int claim, uint32_t *hint)
{
    il_sync_slot_t *slots = il_sync_slots(h);
    uint32_t n = h->nslots, pid = il_self_pid();
    uint64_t start = il_self_proc_start();
    if (*hint < n) {
        il_sync_slot_t *s = &slots[*hint];
        if (LD(s->pid) == pid && LD(s->tid) == 0 && LD(s->start) == start)
            return s;
    }
    int64_t free = -1, idle = -1, record = -1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t p = LD(slots[i].pid);
        if (p == pid && LD(slots[i].tid) == 0 && LD(slots[i].start) == start &&
            LD(slots[i].state) != IL_SLOT_RECOVERED) {
            *hint = i;
            return &slots[i];
        }
        if (p == 0 && free < 0)
            free = i;
        else if (p && idle < 0 && LD(slots[i].tid) == 0 && LD(slots[i].count) == 0)
            idle = i;
        else if (p && record < 0 && LD(slots[i].state) == IL_SLOT_RECOVERED)
            record = i;
    }
    if (!claim)
        return NULL;
    if (free < 0)
        free = idle; /* reuse a live process's empty slot: it re-claims when needed */
    if (free < 0)
        free = record; /* a holder beats a report: its takers get `dead_pid` instead */
    if (free < 0)
        return NULL;
    il_sync_slot_t *s = &slots[free];
    /* Claim: plain stores, pid last; count is 0, so a death here leaves a
     * slot that holds nothing (sync.h). */
    ST(s->count, 0);
    ST(s->state, IL_SLOT_IDLE);
    ST(s->tid, 0);
    ST(s->start, start);
    ST(s->pid, pid);
    *hint = (uint32_t)free;
    return s;
}

il_sync_slot_t *il_sync_thread_slot(il_sync_head_t *h, uint32_t state)
{
    il_sync_slot_t *slots = il_sync_slots(h);
    for (uint32_t i = 0; i < h->nslots; i++) {
        if (LD(slots[i].pid) == 0) {
            il_sync_slot_t *s = &slots[i];
            ST(s->count, 0);
            ST(s->state, IL_SLOT_IDLE);
            ST(s->tid, il_self_tid());
            ST(s->start, il_self_start());
            ST(s->pid, il_self_pid());
            return s;
        }
    }
    return NULL;
}

/* Report one recovered unit to the caller that takes it (adds to r).
 *
 * Semaphore (`*record` not NULL): each dead process's units wait in a
 * RECOVERED slot naming it (il_sync_sweep), so that two holders recovered
 * by one sweep are each reported with their own pid, one per unit taken;
 * the taker decrements that slot's count in the same log (one more entry)
 * and frees it once it is 0 (*record, after the commit).  A unit with no
 * record (its slot was reused when the table was full, or RWLock, whose
 * logs have no room for the extra entry) is reported with `dead_pid`, the
 * last dead holder swept. */
static int take_recovered(il_sync_head_t *h, il_redo_t *r, uint32_t *dead,
                          il_sync_slot_t **record)
{
    uint32_t rec = LD(h->recovered);
    if (!rec)
        return IL_OK;
    IL_REDO_SET(r, h, h->recovered, rec - 1);
    uint32_t pid = LD(h->dead_pid);
    if (record) {
        il_sync_slot_t *slots = il_sync_slots(h);
        for (uint32_t i = 0; i < h->nslots; i++) {
            il_sync_slot_t *s = &slots[i];
            uint32_t left = LD(s->count);
            if (LD(s->pid) && LD(s->state) == IL_SLOT_RECOVERED && left) {
                pid = LD(s->pid);
                IL_REDO_SET(r, h, s->count, left - 1);
                if (left == 1)
                    *record = s;
                break;
            }
        }
    }
    if (dead)
        *dead = pid;
    return IL_OWNER_DIED;
}

static inline void count_acquisition(il_sync_head_t *h)
{
    /* under the guard: a plain increment is race-free (statistics only) */
    ST(h->acquisitions, LD(h->acquisitions) + 1);
}

/* ---------------------------------------------------------------- sweep */

static int slot_dead(il_sync_slot_t *s)
{
    uint32_t pid = LD(s->pid), tid = LD(s->tid);
    if (!pid)
        return 0;
    return !il_task_alive(tid ? tid : pid, LD(s->start));
}

int il_sync_sweep(il_sync_head_t *h)
{
    il_sync_slot_t *slots = il_sync_slots(h);
    int freed = 0;
    /* relaxed: rate-limit hint only */
    atomic_store_explicit(&h->last_sweep_ns, (uint64_t)il_now_ns(), memory_order_relaxed);
    if (h->kind == IL_SYNC_RWLOCK) {
        il_rwlock_t *l = (il_rwlock_t *)h;
        uint32_t w = LD(l->writer_tid);
        if (w && !il_task_alive(w, LD(l->writer_start))) {
            il_redo_t r = {0};
            IL_REDO_SET(&r, h, h->dead_pid, LD(l->writer_pid) ? LD(l->writer_pid) : w);
            IL_REDO_SET(&r, h, h->recovered, LD(h->recovered) + 1);
            IL_REDO_SET(&r, h, l->writer_pid, 0);
            IL_REDO_SET(&r, h, l->writer_tid, 0);
            il_sync_commit(h, &r);
            ST(h->owner_deaths, LD(h->owner_deaths) + 1);
            freed++;
        }
    }
    for (uint32_t i = 0; slots && i < h->nslots; i++) {
        il_sync_slot_t *s = &slots[i];
        if (LD(s->pid) && LD(s->state) == IL_SLOT_RECOVERED) {
            /* recovered already; its reports are still to be made, unless a
             * taker died between its commit and the free */
            if (LD(s->count) == 0)
                slot_free(s);
            continue;
        }
        if (!slot_dead(s))
            continue;
        uint32_t pid = LD(s->pid), count = LD(s->count), state = LD(s->state);
        il_redo_t r = {0};
        switch (h->kind) {
        case IL_SYNC_SEMAPHORE:
            if (count) {
                /* The units go back at once; the slot stays, as the record
                 * of whom to report to their next takers (take_recovered):
                 * state RECOVERED, count = the units, pid = the dead one. */
                il_sem_t *sem = (il_sem_t *)h;
                IL_REDO_SET(&r, h, sem->value, LD(sem->value) + count);
                IL_REDO_SET(&r, h, s->state, IL_SLOT_RECOVERED);
                IL_REDO_SET(&r, h, h->recovered, LD(h->recovered) + count);
                IL_REDO_SET(&r, h, h->dead_pid, pid);
                il_sync_commit(h, &r);
                ST(h->owner_deaths, LD(h->owner_deaths) + 1);
                freed++;
                continue; /* not freed: see above */
            }
            break;
        case IL_SYNC_RWLOCK: {
            il_rwlock_t *l = (il_rwlock_t *)h;
            if (LD(s->tid) == 0 && count) {
                IL_REDO_SET(&r, h, l->readers, LD(l->readers) - count);
                IL_REDO_SET(&r, h, s->count, 0);
                IL_REDO_SET(&r, h, h->recovered, LD(h->recovered) + 1);
                IL_REDO_SET(&r, h, h->dead_pid, pid);
            } else if (state == IL_SLOT_WRITER_WAITING) {
                IL_REDO_SET(&r, h, s->state, IL_SLOT_IDLE);
                IL_REDO_SET(&r, h, l->writers_waiting, LD(l->writers_waiting) - 1);
            }
            break;
        }
        case IL_SYNC_BARRIER:
            if (state == IL_SLOT_WAITING) {
                /* A party died at the barrier: it can never be passed. */
                il_barrier_t *b = (il_barrier_t *)h;
                IL_REDO_SET(&r, h, b->broken, 1);
                IL_REDO_SET(&r, h, s->state, IL_SLOT_IDLE);
                IL_REDO_SET(&r, h, h->dead_pid, pid);
            }
            break;
        default: /* Condition: a dead waiter is simply forgotten */
            break;
        }
        if (r.n) {
            il_sync_commit(h, &r);
            ST(h->owner_deaths, LD(h->owner_deaths) + 1);
        }
        slot_free(s);
        freed++;
    }
    return freed;
}

/* ------------------------------------------------------------ Semaphore */

int il_sem_try_acquire(il_sem_t *s, uint32_t *hint, int may_wait, uint32_t *key, uint32_t *dead)
{
    il_sync_head_t *h = &s->h;
    uint32_t v = LD(s->value);
    if (v > 0) {
        il_sync_slot_t *slot = il_sync_proc_slot(h, 1, hint);
        il_redo_t r = {0};
        IL_REDO_SET(&r, h, s->value, v - 1);
        if (slot)
            IL_REDO_SET(&r, h, slot->count, LD(slot->count) + 1);
        else
            IL_REDO_SET(&r, h, s->untracked, LD(s->untracked) + 1);
        il_sync_slot_t *record = NULL;
        int res = take_recovered(h, &r, dead, &record);
        il_sync_commit(h, &r);
        if (record)
            slot_free(record); /* its last report: count 0, a death here leaves it to a sweep */
        count_acquisition(h);
        return res;
    }
    if (!may_wait)
        return IL_TIMEDOUT;
    *key = il_ec_prepare(&h->ec);
    return IL_WAIT;
}

int il_sem_release(il_sem_t *s, uint32_t n, uint32_t *hint)
{
    il_sync_head_t *h = &s->h;
    uint32_t v = LD(s->value);
    if ((uint64_t)v + n > s->maxvalue) /* UINT32_MAX for Semaphore: overflow only */
        return IL_OVERFLOW;
    il_sync_slot_t *slot = il_sync_proc_slot(h, 0, hint);
    il_redo_t r = {0};
    IL_REDO_SET(&r, h, s->value, v + n);
    /* Units this process holds are given back first; beyond them the
     * release is a signal (any process may release a semaphore). */
    uint32_t mine = slot ? LD(slot->count) : 0, take = mine < n ? mine : n;
    if (take)
        IL_REDO_SET(&r, h, slot->count, mine - take);
    uint32_t un = LD(s->untracked), rest = n - take;
    if (rest && un)
        IL_REDO_SET(&r, h, s->untracked, un - (rest < un ? rest : un));
    il_sync_commit(h, &r);
    return IL_OK;
}

/* --------------------------------------------------------------- RWLock */

int il_rw_try_read(il_rwlock_t *l, uint32_t *hint, int may_wait, uint32_t *key, uint32_t *dead)
{
    il_sync_head_t *h = &l->h;
    uint32_t w = LD(l->writer_tid);
    if (w == 0) {
        il_sync_slot_t *slot = il_sync_proc_slot(h, 0, hint);
        int mine = slot && LD(slot->count) > 0;
        /* Writer preference, except for a process that already reads: it
         * would wait for a writer that waits for it. */
        if (LD(l->writers_waiting) == 0 || mine) {
            if (!slot)
                slot = il_sync_proc_slot(h, 1, hint);
            il_redo_t r = {0};
            IL_REDO_SET(&r, h, l->readers, LD(l->readers) + 1);
            if (slot)
                IL_REDO_SET(&r, h, slot->count, LD(slot->count) + 1);
            else
                IL_REDO_SET(&r, h, l->untracked, LD(l->untracked) + 1);
            int res = take_recovered(h, &r, dead, NULL);
            il_sync_commit(h, &r);
            count_acquisition(h);
            return res;
        }
    } else if (w == il_self_tid()) {
        return IL_DEADLK;
    }
    if (!may_wait)
        return IL_TIMEDOUT;
    *key = il_ec_prepare(&h->ec);
    return IL_WAIT;
}

int il_rw_release_read(il_rwlock_t *l, uint32_t *hint)
{
    il_sync_head_t *h = &l->h;
    il_sync_slot_t *slot = il_sync_proc_slot(h, 0, hint);
    il_redo_t r = {0};
    if (slot && LD(slot->count) > 0)
        IL_REDO_SET(&r, h, slot->count, LD(slot->count) - 1);
    else if (LD(l->untracked) > 0)
        IL_REDO_SET(&r, h, l->untracked, LD(l->untracked) - 1);
    else
        return IL_PERM;
    IL_REDO_SET(&r, h, l->readers, LD(l->readers) - 1);
    il_sync_commit(h, &r);
    return IL_OK;
}

int il_rw_try_write(il_rwlock_t *l, il_sync_slot_t **waiting, int may_wait, uint32_t *key,
                    uint32_t *dead)
{
    il_sync_head_t *h = &l->h;
    uint32_t tid = il_self_tid(), w = LD(l->writer_tid);
    if (w == tid)
        return IL_DEADLK;
    if (w == 0 && LD(l->readers) == 0) {
        /* 64-bit start first (plain): with writer_tid still 0 it means nothing. */
        ST(l->writer_start, il_self_start());
        il_redo_t r = {0};
        IL_REDO_SET(&r, h, l->writer_pid, il_self_pid());
        IL_REDO_SET(&r, h, l->writer_tid, tid);
        il_sync_slot_t *ws = *waiting;
        if (ws) {
            IL_REDO_SET(&r, h, ws->state, IL_SLOT_IDLE);
            IL_REDO_SET(&r, h, l->writers_waiting, LD(l->writers_waiting) - 1);
        }
        int res = take_recovered(h, &r, dead, NULL);
        il_sync_commit(h, &r);
        if (ws) {
            slot_free(ws);
            *waiting = NULL;
        }
        count_acquisition(h);
        ST(l->write_acquisitions, LD(l->write_acquisitions) + 1);
        return res;
    }
    if (!may_wait)
        return IL_TIMEDOUT;
    if (!*waiting) {
        /* Announce ourselves: from now on new readers wait (no starvation). */
        il_sync_slot_t *ws = il_sync_thread_slot(h, IL_SLOT_WRITER_WAITING);
        if (ws) {
            il_redo_t r = {0};
            IL_REDO_SET(&r, h, ws->state, IL_SLOT_WRITER_WAITING);
            IL_REDO_SET(&r, h, l->writers_waiting, LD(l->writers_waiting) + 1);
            il_sync_commit(h, &r);
            *waiting = ws;
        }
    }
    *key = il_ec_prepare(&h->ec);
    return IL_WAIT;
}

void il_rw_cancel_write(il_rwlock_t *l, il_sync_slot_t *ws)
{
    il_sync_head_t *h = &l->h;
    if (!ws || LD(ws->state) != IL_SLOT_WRITER_WAITING || LD(ws->tid) != il_self_tid())
        return;
    il_redo_t r = {0};
    IL_REDO_SET(&r, h, ws->state, IL_SLOT_IDLE);
    IL_REDO_SET(&r, h, l->writers_waiting, LD(l->writers_waiting) - 1);
    il_sync_commit(h, &r);
    slot_free(ws);
}

int il_rw_release_write(il_rwlock_t *l)
{
    il_sync_head_t *h = &l->h;
    if (LD(l->writer_tid) != il_self_tid())
        return IL_PERM;
    il_redo_t r = {0};
    IL_REDO_SET(&r, h, l->writer_pid, 0);
    IL_REDO_SET(&r, h, l->writer_tid, 0);
    il_sync_commit(h, &r);
    return IL_OK;
}

/* -------------------------------------------------------------- Barrier */

int il_barrier_arrive(il_barrier_t *b, uint32_t *index, il_sync_slot_t **slot)
{
    il_sync_head_t *h = &b->h;
    if (LD(b->broken))
        return IL_BROKEN;
    uint32_t c = LD(b->count);
    if (c >= b->parties)
        return IL_BROKEN; /* a last party died while passing: count is stuck */
    il_sync_slot_t *s = il_sync_thread_slot(h, IL_SLOT_WAITING);
    if (!s)
        return IL_OVERFLOW;
    il_redo_t r = {0};
    IL_REDO_SET(&r, h, s->count, LD(b->gen));
    IL_REDO_SET(&r, h, s->state, IL_SLOT_WAITING);
    IL_REDO_SET(&r, h, b->count, c + 1);
    il_sync_commit(h, &r);
    count_acquisition(h);
    *index = c;
    *slot = s;
    return IL_OK;
}

void il_barrier_pass(il_barrier_t *b, il_sync_slot_t *self)
{
    il_sync_head_t *h = &b->h;
    il_sync_slot_t *slots = b->slots;
    uint32_t gen = LD(b->gen);
    /* Mark each waiter of this generation first (each store is idempotent),
     * then advance the generation in one commit.  A death halfway leaves
     * our slot WAITING: the unmarked waiters' sweep breaks the barrier. */
    for (uint32_t i = 0; i < h->nslots; i++) {
        il_sync_slot_t *s = &slots[i];
        if (s != self && LD(s->pid) && LD(s->state) == IL_SLOT_WAITING && LD(s->count) == gen)
            ST(s->state, IL_SLOT_PASSED);
    }
    il_redo_t r = {0};
    IL_REDO_SET(&r, h, b->gen, gen + 1);
    IL_REDO_SET(&r, h, b->count, 0);
    IL_REDO_SET(&r, h, b->passes, LD(b->passes) + 1);
    IL_REDO_SET(&r, h, self->state, IL_SLOT_IDLE);
    il_sync_commit(h, &r);
    slot_free(self);
}

void il_barrier_break(il_barrier_t *b)
{
    /* One store breaks it (waiters treat WAITING + broken as broken); the
     * slot marks are for waiters that leave after a reset. */
    ST(b->broken, 1);
    for (uint32_t i = 0; i < b->h.nslots; i++)
        if (LD(b->slots[i].pid) && LD(b->slots[i].state) == IL_SLOT_WAITING)
            ST(b->slots[i].state, IL_SLOT_BROKEN);
}

void il_barrier_reset(il_barrier_t *b)
{
    il_sync_head_t *h = &b->h;
    il_barrier_break(b);
    il_redo_t r = {0};
    IL_REDO_SET(&r, h, b->count, 0);
    IL_REDO_SET(&r, h, b->gen, LD(b->gen) + 1);
    IL_REDO_SET(&r, h, b->broken, 0);
    il_sync_commit(h, &r);
}

int il_barrier_check(il_barrier_t *b, il_sync_slot_t *s, uint32_t *key)
{
    uint32_t st = LD(s->state);
    if (st == IL_SLOT_PASSED) {
        slot_free(s);
        return IL_OK;
    }
    if (st == IL_SLOT_BROKEN || (st == IL_SLOT_WAITING && LD(b->broken))) {
        slot_free(s);
        return IL_BROKEN;
    }
    *key = il_ec_prepare(&b->h.ec);
    return IL_WAIT;
}

void il_barrier_leave(il_barrier_t *b, il_sync_slot_t *s)
{
    if (LD(s->state) == IL_SLOT_WAITING)
        il_barrier_break(b);
    slot_free(s);
}

/* ------------------------------------------------------------ Condition */

il_sync_slot_t *il_cond_enter(il_condition_t *c)
{
    il_sync_head_t *h = &c->h;
    il_sync_slot_t *s = il_sync_thread_slot(h, IL_SLOT_WAITING);
    if (!s)
        return NULL;
    uint32_t t = LD(c->ticket);
    il_redo_t r = {0};
    IL_REDO_SET(&r, h, s->count, t);
    IL_REDO_SET(&r, h, s->state, IL_SLOT_WAITING);
    IL_REDO_SET(&r, h, c->ticket, t + 1);
    il_sync_commit(h, &r);
    return s;
}

int il_cond_check(il_condition_t *c, il_sync_slot_t *s, uint32_t *key)
{
    if (LD(s->state) == IL_SLOT_NOTIFIED)
        return IL_OK;
    *key = il_ec_prepare(&c->h.ec);
    return IL_WAIT;
}

int il_cond_leave(il_condition_t *c, il_sync_slot_t *s)
{
    int notified = LD(s->state) == IL_SLOT_NOTIFIED;
    slot_free(s);
    return notified;
}

uint32_t il_cond_notify(il_condition_t *c, uint32_t n)
{
    il_sync_head_t *h = &c->h;
    il_sync_slot_t *slots = c->slots;
    uint32_t done = 0;
    if (n >= h->nslots) {
        /* notify_all: no liveness checks (a dead waiter's mark is harmless,
         * its slot is swept later) */
        for (uint32_t i = 0; i < h->nslots; i++)
            if (LD(slots[i].pid) && LD(slots[i].state) == IL_SLOT_WAITING) {
                ST(slots[i].state, IL_SLOT_NOTIFIED);
                done++;
            }
    } else {
        while (done < n) {
            /* the oldest waiting ticket (wrap-safe comparison) */
            il_sync_slot_t *best = NULL;
            for (uint32_t i = 0; i < h->nslots; i++) {
                il_sync_slot_t *s = &slots[i];
                if (LD(s->pid) && LD(s->state) == IL_SLOT_WAITING &&
                    (!best || (int32_t)(LD(s->count) - LD(best->count)) < 0))
                    best = s;
            }
            if (!best)
                break;
            if (slot_dead(best)) { /* a notify must not be spent on the dead */
                slot_free(best);
                continue;
            }
            ST(best->state, IL_SLOT_NOTIFIED);
            done++;
        }
    }
    ST(c->notifies, LD(c->notifies) + done);
    return done;
}
