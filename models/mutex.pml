/*
 * mutex.pml -- the robust futex mutex of src/interlock/_core/mutex.c:
 * il_mutex_trylock_fast (mutex.h), il_mutex_lock, il_mutex_unlock, with the
 * owner hints (owner_tid, owner_start) and the liveness check after a
 * timed-out slice.  Step-by-step map to the C: models/README.md.
 *
 * NPROC workers each take and release the lock ROUNDS times; the killer may
 * SIGKILL one of them at any step (common.pml).  Checked:
 *   - mutual exclusion among living processes (assertion on entry);
 *   - a takeover (IL_OWNER_DIED) only from an owner that is really dead;
 *   - release only by the owner (IL_PERM never happens to a correct caller);
 *   - valid end states: every survivor finishes (no deadlock), and with
 *     NO_TIMEOUT and no deaths, no sleeper is left behind (no lost wake-up);
 *   - (pan -l, STALL_TIMEOUT) no livelock.
 *
 * Extra switches: ROUNDS (default 2), DEADLINES (an acquire may give up at
 * its deadline check, leaving a stale WAITERS bit), NO_START_CHECK (the
 * liveness check ignores owner_start: il_task_alive(owner, 0)),
 * SPLIT_HINT (the hint race this model found in an earlier mutex.c, kept as
 * a mutant: owner_tid and owner_start read as two loads; the C now packs
 * them in one word, the default here; see docs/design/verification.md).
 * MUTANT_NO_WAKE breaks the release on purpose (no FUTEX_WAKE): the
 * lost-wake-up check must then fail, which shows that it can.
 * WATCHER makes the last process an asyncio waiter (il_mutex_wait_unlocked,
 * then a non-blocking acquire or nothing), beside the acquirers;
 * MUTANT_SWALLOW_WAKE is the earlier il_mutex_wait_unlocked, which returned
 * with the release's one wake-up without passing it on: an acquirer in
 * another process slept until its slice ran out.  With NO_TIMEOUT the model
 * must fail on it (a sleeper left behind: invalid end state).
 */
#include "common.pml"

#ifndef ROUNDS
#define ROUNDS 2
#endif

#define WAITERS 8                 /* IL_MUTEX_WAITERS (bit 31 in C) */
#define TIDOF(v) ((v) & 7)        /* v & IL_MUTEX_TID_MASK */
#define START(t) (10 + (t))       /* il_self_start() of TID t: > 1, unique */
#define FUTEX_WORD 1              /* futex id of m->word */

#define IL_OK 0
#define IL_TIMEDOUT 1
#define IL_OWNER_DIED 5

byte word;          /* m->word */
byte owner_tid;     /* m->owner_tid (hint) */
byte owner_start;   /* m->owner_start (hint) */
bool inside[MAXP];  /* ghost: process i is in its critical section */
byte finished;      /* ghost: workers that completed all rounds */

/* il_task_alive(tid, start): a start-time mismatch means "TID reused" */
#ifdef NO_START_CHECK
#define TASK_ALIVE(t, s) alive[(t) - 1]
#else
#define TASK_ALIVE(t, s) (((s) > 1 && (s) != START(t)) -> 0 : alive[(t) - 1])
#endif

/* note_owner(): hints after the CAS that took the word (owner_pid omitted:
 * used only in the report) */
#ifndef SPLIT_HINT
/* The C today (mutex.h il_mutex_note_owner / mutex.c owner_alive): owner TID
 * and start time packed in one 64-bit word, one store, one load. */
inline note_owner()
{
    d_step { owner_start = START(tid); owner_tid = tid }
}
#else
inline note_owner()
{
    owner_start = START(tid);
    owner_tid = tid
}
#endif

/* ---- il_mutex_unlock(m), by the owner `tid`; v is a scratch local ---- */
inline unlock()
{
    assert(TIDOF(word) == tid);                        /* U1: not IL_PERM */
    owner_tid = 0;                                     /* U2 */
    atomic { v = word; word = 0 };                     /* U3 xchg */
#ifndef MUTANT_NO_WAKE
    if
    :: v & WAITERS -> futex_wake1(FUTEX_WORD)          /* U4 */
    :: else
    fi;
#endif
    v = 0
}

/* owner_alive(m, owner) into `ok` (L10 below; ot, st scratch) */
inline owner_alive(owner)
{
#ifndef SPLIT_HINT
    d_step { ot = owner_tid; st = owner_start };
    if
    :: ot != owner -> st = 0
    :: else
    fi;
#else
    ot = owner_tid;
    if
    :: ot == owner -> st = owner_start
    :: else -> st = 0
    fi;
#endif
    ok = TASK_ALIVE(owner, st);
    ot = 0; st = 0
}

/* critical section: nobody else alive is inside */
inline critical_section()
{
    d_step {
        assert(!(inside[0] && alive[0]) && !(inside[1] && alive[1]) &&
               !(inside[2] && alive[2]) && !(inside[3] && alive[3]));
        inside[me] = 1
    };
    inside[me] = 0
}

proctype worker(byte me)
{
    byte tid = me + 1;
    byte v, now_v, owner, ot, st, r, result, round;
    bool ok;

    {
    do
    :: round < ROUNDS ->
        /* ---- il_mutex_lock(m, deadline, &dead_pid) ---- */
        /* L1 fast path: CAS(word, 0 -> tid) */
        atomic { if :: word == 0 -> word = tid; ok = 1 :: else -> ok = 0 fi };
        if
        :: ok -> note_owner(); result = IL_OK; goto locked
        :: else
        fi;
        /* L2 deadlock check omitted: a worker never re-locks */
        /* L3 slow loop */
        do
        :: v = word;                                       /* L4 load */
            if
            :: TIDOF(v) == 0 ->
                /* L5 free: CAS(word, v -> tid|WAITERS) */
                atomic { if :: word == v -> word = tid | WAITERS; ok = 1 :: else -> ok = 0 fi };
                if
                :: ok -> note_owner(); result = IL_OK; break
                :: else -> goto retry
                fi
            :: else
            fi;
            if
            :: !(v & WAITERS) ->
                /* L6 CAS(word, v -> v|WAITERS) */
                atomic { if :: word == v -> word = v | WAITERS; ok = 1 :: else -> ok = 0 fi };
                if
                :: ok -> v = v | WAITERS
                :: else -> goto retry
                fi
            :: else
            fi;
#ifdef DEADLINES
            /* L7 now >= deadline */
            if
            :: result = IL_TIMEDOUT; break
            :: skip
            fi;
#endif
            /* L8 il_futex_wait(&word, v, slice) */
            futex_wait(word, v, FUTEX_WORD, r);
            if
            :: r == F_TIMEDOUT ->
                now_v = word;                              /* L9 */
                owner = TIDOF(now_v);
                if
                :: owner != 0 && owner != tid ->
                    /* L10 owner_alive(): hint loads, then /proc */
                    owner_alive(owner);
                    if
                    :: !ok ->
                        /* L11 takeover CAS(word, now_v -> tid|WAITERS) */
                        atomic {
                            if
                            :: word == now_v ->
                                word = tid | WAITERS; ok = 1;
                                /* never steal from the living */
                                assert(!alive[owner - 1])
                            :: else -> ok = 0
                            fi
                        };
                        if
                        :: ok -> note_owner(); result = IL_OWNER_DIED; break
                        :: else
                        fi
                    :: else
                    fi
                :: else
                fi;
                now_v = 0; owner = 0
            :: else
            fi;
retry:      skip
        od;
        v = 0; r = 0;
        if
        :: result == IL_TIMEDOUT -> goto next
        :: else
        fi;
locked:  skip;
        critical_section();
        unlock();
next:
        v = 0; result = 0;
        round++
    :: else -> break
    od;
    finished++
    } unless { kill[me] -> die() }
}

#ifdef WATCHER
/* The asyncio side of a Lock (aio.py acquire_async): a helper thread waits in
 * il_mutex_wait_unlocked (takes nothing); then the coroutine, in the loop's
 * thread, tries acquire(block=False) and waits again if it lost the race, or
 * it was cancelled meanwhile and takes nothing at all. */
proctype watcher(byte me)
{
    byte tid = me + 1;
    byte v, owner, ot, st, r, round;
    bool ok, woken;

    {
    do
    :: round < ROUNDS ->
        /* ---- il_mutex_wait_unlocked(m, deadline) ---- */
        do
        :: v = word;                                       /* W1 load */
            owner = TIDOF(v);
            if
            :: owner == 0 ->
#ifndef MUTANT_SWALLOW_WAKE
                if
                :: woken -> futex_wake1(FUTEX_WORD)        /* W2 pass the wake on */
                :: else
                fi;
#endif
                break
            :: else
            fi;
            if
            :: !(v & WAITERS) ->
                /* W3 CAS(word, v -> v|WAITERS) */
                atomic { if :: word == v -> word = v | WAITERS; ok = 1 :: else -> ok = 0 fi };
                if
                :: ok -> v = v | WAITERS
                :: else -> goto wretry
                fi
            :: else
            fi;
            /* the word is held with WAITERS: its release wakes someone, the
             * wake-up we had is handed to it */
            woken = 0;
            futex_wait(word, v, FUTEX_WORD, r);            /* W4 il_futex_wait */
            if
            :: r == F_TIMEDOUT ->
                owner_alive(owner);                        /* W5 */
                if
                :: !ok -> break                            /* free to take over */
                :: else
                fi
            :: else -> woken = 1                           /* woken, or EAGAIN */
            fi;
wretry:     skip
        od;
        woken = 0; v = 0; r = 0; owner = 0;
        /* ---- the coroutine: acquire(block=False), or cancelled ---- */
        if
        :: round++                                         /* cancelled: takes nothing */
        :: atomic { if :: word == 0 -> word = tid; ok = 1 :: else -> ok = 0 fi };
            if
            :: ok ->                                       /* il_mutex_trylock_fast */
                note_owner(); critical_section(); unlock(); round++
            :: else ->
                /* deadline 0: a dead owner is taken over at once (mutex.c) */
                v = word;
                owner = TIDOF(v);
                if
                :: owner != 0 && owner != tid ->
                    owner_alive(owner);
                    if
                    :: !ok ->
                        atomic {
                            if
                            :: word == v -> word = tid | (v & WAITERS); ok = 1;
                                assert(!alive[owner - 1])
                            :: else -> ok = 0
                            fi
                        };
                        if
                        :: ok -> note_owner(); critical_section(); unlock(); round++
                        :: else                            /* lost: wait again */
                        fi
                    :: else -> ok = 0                      /* lost: wait again */
                    fi
                :: else
                fi;
                v = 0; owner = 0
            fi
        fi
    :: else -> break
    od;
    finished++
    } unless { kill[me] -> die() }
}
#endif

init
{
    atomic {
        byte i;
        for (i : 0 .. NPROC - 1) { alive[i] = 1 };
#ifdef WATCHER
        /* the last process waits the asyncio way, the others acquire */
        for (i : 0 .. NPROC - 2) { run worker(i) };
        run watcher(NPROC - 1)
#else
        for (i : 0 .. NPROC - 1) { run worker(i) }
#endif
    }
}
