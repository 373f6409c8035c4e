/*
 * eventcount.pml -- the eventcount of src/interlock/_core/eventcount.h
 * (il_ec_prepare / il_ec_cancel / il_ec_sleep / il_ec_notify) as the ring
 * uses it in module.c: ring_wait() on the waiting side, "publish, then
 * il_ec_notify(ec, 1)" on the notifying side, and Ring_close()'s
 * unconditional "seq += 1; FUTEX_WAKE(all)".  Map to the C: README.md.
 *
 * Workers 0 .. NPROD-1 publish PUTS items each (the change a waiter waits
 * for); the other workers consume items until the queue is closed and
 * empty.  init closes the queue once every producer has finished or died.
 * Checked:
 *   - NO_TIMEOUT, DEATHS=0, NO_CLOSE: no invalid end state, i.e. no
 *     consumer sleeps forever while an item is there for it (no lost
 *     wake-up); MUTANT_NOTIFY_FIRST (notify before publishing) must fail it;
 *   - with a death at any step and STALL_TIMEOUT: every survivor finishes,
 *     and every item is taken if a consumer survives;
 *   - with deaths and timeouts at any moment: the assertions (safety).
 * WATCHER (with NO_CLOSE, DEATHS=0): the last process is an asyncio waiter
 * (Ring_wait_readable: waits, takes nothing); the consumers must still get
 * every item without a timeout.  MUTANT_SWALLOW_WAKE (the watcher does not
 * pass on the wake-up it consumed, as before issue 12) must fail that.
 *
 * Memory order: spin interleaves, i.e. it assumes sequential consistency.
 * The C gets that for the one pair that needs it (the notifier's store of
 * the change, then its load of `waiters`; the waiter's increment of
 * `waiters`, then its loads of seq and of the condition) from the two
 * seq_cst fences; see docs/design/verification.md.
 */
#include "common.pml"

#ifndef NPROD
#define NPROD 1
#endif
#ifndef PUTS
#define PUTS 2
#endif
#define FUTEX_SEQ 2
#ifdef WATCHER
#define NCONS (NPROC - NPROD - 1) /* the last process is the watcher */
#else
#define NCONS (NPROC - NPROD)
#endif
/* NO_CLOSE: nobody closes; each consumer takes exactly QUOTA items, so a
 * consumer's wake-up can only come from a producer's notify (the close
 * would otherwise rescue a lost one).  NPROD * PUTS == NCONS * QUOTA. */
#define QUOTA (NPROD * PUTS / NCONS)

byte seq;        /* ec->seq, modulo 256 here (2^32 in C) */
byte waiters;    /* ec->waiters */
byte avail;      /* the condition's data: items published, not yet taken */
bool closed;     /* IL_RING_CLOSED */
byte taken;      /* ghost: items taken */
byte published;  /* ghost: items published */
bool exited[MAXP];

/* il_ec_notify(ec, 1) */
inline ec_notify(i)
{
    /* N1 fence(seq_cst); N2 load waiters */
    if
    :: waiters != 0 ->
        seq++;                        /* N3 fetch_add(seq, 1, release) */
        futex_wake_n(FUTEX_SEQ, 1, i) /* N4 */
    :: else
    fi
}

proctype producer(byte me)
{
    byte n, i;
    {
    do
    :: n < PUTS ->
#ifdef MUTANT_NOTIFY_FIRST
        ec_notify(i);                 /* wrong order: notify, then publish */
        d_step { avail++; published++ };
#else
        d_step { avail++; published++ };  /* P1 publish (tail store) */
        ec_notify(i);
#endif
        n++
    :: else -> break
    od
    } unless { kill[me] -> die() };
    exited[me] = 1
}

proctype consumer(byte me)
{
    byte key, r, mine;
    bool got, cl;
    {
    do
#ifdef NO_CLOSE
    :: mine == QUOTA -> break
    :: else ->
#else
    ::
#endif
        cl = closed;                   /* C0 load flags (acquire), before the data */
        /* C1 try to take one (get under clock: commit = head store) */
        d_step { if :: avail > 0 -> avail--; taken++; got = 1 :: else -> got = 0 fi };
        if
        :: got -> got = 0; cl = 0; mine++
        :: else ->
            if
            :: cl -> break            /* C2 closed (before we looked) and drained */
            :: else
            fi;
            /* ring_wait(): the spin phase only polls the condition; omitted */
            do
            :: waiters++;             /* W1 il_ec_prepare: fetch_add(waiters), fence */
                key = seq;            /* W2 load seq (acquire) */
                if
                :: avail > 0 || closed -> /* W3 cond() */
                    waiters--;        /* W4 il_ec_cancel */
                    break
                :: else
                fi;
                futex_wait(seq, key, FUTEX_SEQ, r); /* W5 il_ec_sleep */
                waiters--;            /* W6 il_ec_cancel */
                key = 0; r = 0
                /* W7 woken, spurious or timed out: check again */
            od;
            key = 0
        fi
    od
    } unless { kill[me] -> die() };
    exited[me] = 1
}

#ifdef WATCHER
/* The asyncio side (module.c Ring_wait_readable, for aio.py get_async): wait
 * until the condition holds, taking nothing; its coroutine may then be gone
 * (cancelled, timed out) and take nothing at all, which is what it does
 * here.  Returning after a wake-up, it passes the wake-up on. */
proctype watcher(byte me)
{
    byte key, r, i;
    bool woken;
    {
    do
    :: waiters++;                     /* W1 */
        key = seq;                    /* W2 */
        if
        :: avail > 0 || closed ->     /* W3 */
            waiters--;                /* W4 */
            break
        :: else
        fi;
        /* W5 il_ec_sleep; its slice may end at any moment, even with
         * NO_TIMEOUT: aio.py's helper thread waits in slices and stops once
         * no coroutine waits (so it is never left asleep) */
        atomic {
            if
            :: seq != key -> r = F_AGAIN
            :: else -> fq[me] = FUTEX_SEQ; r = F_SLEEP
            fi
        };
        if
        :: r == F_SLEEP ->
            if
            :: fq[me] == 0 -> r = F_WOKEN
            :: d_step {
                   if
                   :: fq[me] != 0 -> fq[me] = 0; r = F_TIMEDOUT
                   :: else -> r = F_WOKEN
                   fi
               }
            fi
        :: else
        fi;
        waiters--;                    /* W6 */
        woken = (r != F_TIMEDOUT);
        if
        :: r == F_TIMEDOUT -> break   /* no coroutine waits any more: give up */
        :: else
        fi;
        key = 0; r = 0
    od;
#ifndef MUTANT_SWALLOW_WAKE
    if
    :: woken -> ec_notify(i)          /* W8 pass the wake-up on */
    :: else
    fi
#endif
    } unless { kill[me] -> die() };
    exited[me] = 1
}
#endif

init
{
    byte i;
    atomic {
        for (i : 0 .. NPROC - 1) { alive[i] = 1 };
        for (i : 0 .. NPROC - 1) {
            if
            :: i < NPROD -> run producer(i)
#ifdef WATCHER
            :: i == NPROC - 1 -> run watcher(i)
            :: i >= NPROD && i < NPROC - 1 -> run consumer(i)
#else
            :: else -> run consumer(i)
#endif
            fi
        }
    };
#ifndef NO_CLOSE
    /* the parent joins the producers (finished or dead), then q.close() */
    (exited[0] || NPROD < 1) && (exited[1] || NPROD < 2) &&
    (exited[2] || NPROD < 3) && (exited[3] || NPROD < 4);
    closed = 1;                       /* X1 fetch_or(flags, CLOSED) */
    seq++;                            /* X2 seq += 1, unconditionally */
    futex_wake_all(FUTEX_SEQ);        /* X3 FUTEX_WAKE(INT_MAX) */
#endif
    /* join everybody, then: every published item was taken, unless no
     * consumer survived */
    exited[0] && exited[1] && exited[2] && (exited[3] || NPROC < 4);
    assert(taken + avail == published);
    assert(avail == 0 ||
           !((alive[1] && NPROD < 2) || (alive[2] && NPROD < 3) || (alive[3] && NPROD < 4 && NPROC > 3)))
}
