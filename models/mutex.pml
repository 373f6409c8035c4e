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
 * HANDOFF makes processes 0 and 1 a hand-off pair (interlock.Lock is
 * multiprocessing's Lock): 0 acquires ROUNDS times and never releases (its
 * next acquire waits on its own hold: IL_MUTEX_SELF_WAIT), 1 releases each
 * hold it is handed (il_mutex_release_any: CAS from the value seen to 0, no
 * ownership check); process 2 is an ordinary worker.  Checked: one hold at
 * a time (the hand-off hold counts as "inside" from 0's acquire to 1's
 * release), a successful release always ends a real hold, a handed hold's
 * release never finds the lock free, and (NO_TIMEOUT) no sleeper is left
 * behind, the self-waiting holder included.  HANDOFF2: two releasers race
 * to release one hold.  MUTANT_HANDOFF_XCHG: the release frees the word
 * with an unchecked exchange (il_mutex_unlock's, without its ownership
 * check); under HANDOFF2 the "ends a real hold" check must fail.
 */
#include "common.pml"

#ifndef ROUNDS
#define ROUNDS 2
#endif
#ifdef HANDOFF2
#define HANDOFF
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

#ifdef HANDOFF
byte tokens;        /* holds handed to the releaser (a queue between them) */

/* ---- il_mutex_release_any(m), by anyone; v is a scratch local ---- */
inline release_any()
{
#ifndef MUTANT_HANDOFF_XCHG
    do
    :: v = word;                                       /* R1 load */
        if
        :: TIDOF(v) == 0 -> perm = 1; break            /* R2 IL_PERM: ValueError */
        :: else
        fi;
        owner_tid = 0;                                 /* R3 */
        /* R4 CAS(word, v -> 0): it ends a real hold (ghost) */
        atomic {
            if
            :: word == v -> assert(inside[0]); word = 0; inside[0] = 0; ok = 1
            :: else -> ok = 0
            fi
        };
        if
        :: ok -> break
        :: else
        fi
    od;
#else
    owner_tid = 0;
    atomic { v = word; word = 0; assert(inside[0]); inside[0] = 0 };
#endif
#ifndef HANDOFF2
    assert(!perm);                                     /* one release per hold handed */
#endif
    if
    :: v & WAITERS -> futex_wake1(FUTEX_WORD)          /* R5 */
    :: else
    fi;
    v = 0; ok = 0; perm = 0
}

/* Process 0: acquire, hand the hold over, acquire again (waiting on its own
 * hold until the releaser frees it).  The wait loop is il_mutex_lock's
 * (L3..L11, as in worker above) entered with the word holding our own TID:
 * the liveness check skips our own TID (owner != tid). */
proctype handoff_acquirer(byte me)
{
    byte tid = me + 1;
    byte v, now_v, owner, ot, st, r, round;
    bool ok;

    {
    do
    :: round < ROUNDS ->
        atomic { if :: word == 0 -> word = tid; ok = 1 :: else -> ok = 0 fi };
        if
        :: ok -> goto took
        :: else
        fi;
        do
        :: v = word;
            if
            :: TIDOF(v) == 0 ->
                atomic { if :: word == v -> word = tid | WAITERS; ok = 1 :: else -> ok = 0 fi };
                if
                :: ok -> break
                :: else -> goto hretry
                fi
            :: else
            fi;
            if
            :: !(v & WAITERS) ->
                atomic { if :: word == v -> word = v | WAITERS; ok = 1 :: else -> ok = 0 fi };
                if
                :: ok -> v = v | WAITERS
                :: else -> goto hretry
                fi
            :: else
            fi;
            futex_wait(word, v, FUTEX_WORD, r);
            if
            :: r == F_TIMEDOUT ->
                now_v = word;
                owner = TIDOF(now_v);
                if
                :: owner != 0 && owner != tid ->
                    owner_alive(owner);
                    if
                    :: !ok ->
                        atomic {
                            if
                            :: word == now_v -> word = tid | WAITERS; ok = 1;
                                assert(!alive[owner - 1])
                            :: else -> ok = 0
                            fi
                        };
                        if
                        :: ok -> break
                        :: else
                        fi
                    :: else
                    fi
                :: else
                fi;
                now_v = 0; owner = 0
            :: else
            fi;
hretry:     skip
        od;
took:   note_owner();
        /* the hold begins: nobody else alive holds the lock */
        d_step {
            assert(!(inside[1] && alive[1]) && !(inside[2] && alive[2]) &&
                   !(inside[3] && alive[3]) && !inside[0]);
            inside[0] = 1
        };
        v = 0; r = 0;
        tokens++;                                      /* hand it over */
        round++
    :: else -> break
    od;
    finished++
    } unless { kill[me] -> die() }
}

/* Process 1 (and, with HANDOFF2, process 2 too): release each hold handed
 * over.  With HANDOFF2 both releasers take the same token, so one hold gets
 * two releases at once: with the CAS exactly one ends the hold and the
 * other finds the word free (R2: ValueError "released too many times");
 * the exchange mutant "succeeds" twice, the second time ending no hold. */
proctype handoff_releaser(byte me)
{
    byte tid = me + 1;
    byte v, round;
    bool ok, perm;

    {
    do
    :: round < ROUNDS ->
#ifndef HANDOFF2
        atomic { tokens > 0 -> tokens-- };
#else
        tokens > 0;                                    /* both see the one token */
#endif
        release_any();
        round++
    :: else -> break
    od;
    finished++
    } unless { kill[me] -> die() }
}
#endif

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
#if defined(HANDOFF2)
        run handoff_acquirer(0); run handoff_releaser(1); run handoff_releaser(2)
#elif defined(HANDOFF)
        /* a hand-off pair, and an ordinary worker beside it */
        run handoff_acquirer(0); run handoff_releaser(1);
        for (i : 2 .. NPROC - 1) { run worker(i) }
#elif defined(WATCHER)
        /* the last process waits the asyncio way, the others acquire */
        for (i : 0 .. NPROC - 2) { run worker(i) };
        run watcher(NPROC - 1)
#else
        for (i : 0 .. NPROC - 1) { run worker(i) }
#endif
    }
}
