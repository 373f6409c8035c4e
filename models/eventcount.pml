/*
 * eventcount.pml -- the eventcount of src/interlock/_core/eventcount.h
 * (il_ec_prepare / il_ec_arm / il_ec_cancel / il_ec_sleep /
 * il_ec_notify_armed: the armed variant) as the ring uses it in bind_ring.c:
 * ring_wait() on the waiting side, "publish, then il_ec_notify_armed(ec, 1)"
 * on the notifying side, and Ring_close()'s unconditional "seq += 2;
 * FUTEX_WAKE(all)".  Map to the C: README.md.
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

/* The armed variant: bit 0 of seq is "armed" (a waiter may sleep on this
 * value), the rest the epoch */

/* FUTEX_WAKE(w, 1), with the count it returns in w */
inline futex_wake1_count(fid, w)
{
    atomic {
        w = 1;
        if
        :: fq[0] == fid -> fq[0] = 0
        :: fq[1] == fid -> fq[1] = 0
        :: fq[2] == fid -> fq[2] = 0
        :: fq[3] == fid -> fq[3] = 0
        :: else -> w = 0
        fi
    }
}

/* il_ec_notify_armed(ec, 1) */
inline ec_notify(old, w)
{
    /* N1 fence(seq_cst); N2 load waiters */
    if
    :: waiters != 0 ->
        /* N3 CAS loop: the epoch moves on, bit 0 kept (release) */
        atomic { old = seq; seq = old + 2 };
        if
        :: old & 1 ->
            futex_wake1_count(FUTEX_SEQ, w); /* N4 FUTEX_WAKE(1) */
            if
            :: w == 0 ->
                /* N5 nobody was asleep: disarm.  FUTEX_WAKE_OP: under the
                 * futex's lock, seq &= ~1 and wake every sleeper (one that
                 * fell asleep after N4); a later FUTEX_WAIT on an armed
                 * value finds seq moved */
#ifdef MUTANT_PLAIN_DISARM
                seq = seq & 254
#else
                d_step {
                    seq = seq & 254;
                    if :: fq[0] == FUTEX_SEQ -> fq[0] = 0 :: else fi;
                    if :: fq[1] == FUTEX_SEQ -> fq[1] = 0 :: else fi;
                    if :: fq[2] == FUTEX_SEQ -> fq[2] = 0 :: else fi;
                    if :: fq[3] == FUTEX_SEQ -> fq[3] = 0 :: else fi
                }
#endif
            :: else                        /* more may sleep: still armed */
            fi;
            w = 0
        :: else                            /* nobody armed: no syscall */
        fi;
        old = 0
    :: else
    fi
}

/* il_ec_arm: after a failed check, CAS seq key -> key | 1 unless key is
 * armed already; armed = 0 if seq moved (check again) */
inline ec_arm(key, armed)
{
    atomic {
        if
        :: key & 1 -> armed = 1
        :: else ->
            if
#ifdef MUTANT_NO_ARM
            :: true -> armed = 1
#else
            :: seq == key -> seq = key | 1; key = key | 1; armed = 1
            :: else -> armed = 0
#endif
            fi
        fi
    }
}

proctype producer(byte me)
{
    byte n, old, w;
    {
    do
    :: n < PUTS ->
#ifdef MUTANT_NOTIFY_FIRST
        ec_notify(old, w);            /* wrong order: notify, then publish */
        d_step { avail++; published++ };
#else
        d_step { avail++; published++ };  /* P1 publish (tail store) */
        ec_notify(old, w);
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
    bool got, cl, armed;
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
                ec_arm(key, armed);   /* W4a il_ec_arm */
                if
                :: armed ->
                    armed = 0;
                    futex_wait(seq, key, FUTEX_SEQ, r) /* W5 il_ec_sleep */
                :: else               /* seq moved: check again */
                fi;
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
    byte key, r, old, w;
    bool woken, armed;
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
        ec_arm(key, armed);           /* W4a il_ec_arm */
        if
        :: !armed ->                  /* seq moved: check again (woken as it was) */
            waiters--;
            key = 0;
            goto again
        :: else -> armed = 0
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
        key = 0; r = 0;
again:  skip
    od;
#ifndef MUTANT_SWALLOW_WAKE
    if
    :: woken -> ec_notify(old, w)     /* W8 pass the wake-up on */
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
    seq = seq + 2;                    /* X2 a new epoch (bit 0 kept), unconditionally */
    futex_wake_all(FUTEX_SEQ);        /* X3 FUTEX_WAKE(INT_MAX) */
#endif
    /* join everybody, then: every published item was taken, unless no
     * consumer survived */
    exited[0] && exited[1] && exited[2] && (exited[3] || NPROC < 4);
    assert(taken + avail == published);
    assert(avail == 0 ||
           !((alive[1] && NPROD < 2) || (alive[2] && NPROD < 3) || (alive[3] && NPROD < 4 && NPROC > 3)))
}
