/*
 * ring.pml -- the shared FIFO of src/interlock/_core/ring.h and module.c
 * (ring_put_msgs, ring_get_raw, ring_wait, Ring_close): a byte ring of
 * records with packed tail/head words, a producer lock, a consumer lock,
 * the commit of a put by one store to tail and of a get by one store to
 * head, and the two eventcounts.  Map to the C: models/README.md.
 *
 * Scale: a cell is 8 bytes (the record alignment); SIZE cells of ring,
 * capacity CAP cells; message id m (1, 2, ...) has a header cell and
 * LEN(m) payload cells, so records differ in size and payloads wrap.  The
 * header and every payload cell hold m, so a torn or overwritten record is
 * seen.  Workers 0 .. NPROD-1 put PUTS messages each, the others get until
 * the queue is closed and drained; init closes it once every producer has
 * finished or died.  The killer may SIGKILL one worker at any step.
 *
 * The side locks are the robust mutex as specified (and checked in
 * mutex.pml): one atomic "take it if free, or if its owner is dead".
 *
 * Checked (assertions, valid end states):
 *   - a get reads whole records only: header and payload hold one id;
 *   - exactly once, in commit order: the k-th get to commit takes the k-th
 *     put to commit, and nothing is taken twice;
 *   - at the end, every committed message was taken (if a consumer lives);
 *   - every survivor finishes (no deadlock); with NO_TIMEOUT and no
 *     deaths, no sleeper is left behind (no lost wake-up).
 */
#include "common.pml"

#ifndef NPROD
#define NPROD 2
#endif
#ifndef PUTS
#define PUTS 2
#endif
#ifndef SIZE
#define SIZE 4
#endif
#ifndef CAP
#define CAP SIZE
#endif
#define LEN(m) (1 + ((m) & 1))      /* payload cells: 2, 1, 2, 1, ... */
#define NEED(m) (1 + LEN(m))        /* record cells, header included */
#define MAXMSG 8
#define FUTEX_NOT_EMPTY 3
#define FUTEX_NOT_FULL 4

byte cell[SIZE];                 /* r->data, one byte per 8-byte cell */
/* r->tail and r->head: (count, position) packed in one word; a d_step
 * writes both halves at once, as the one 64-bit store does */
byte tcnt, tpos, hcnt, hpos;
byte cached_hcnt, cached_hpos;   /* r->cached_head, under plock */
byte cached_tcnt, cached_tpos;   /* r->cached_tail, under clock */
byte plock, clock;               /* side locks: owner's TID, 0 free */
bool closed;
byte ne_seq, ne_waiters;         /* r->not_empty */
byte nf_seq, nf_waiters;         /* r->not_full */
byte committed[MAXMSG];          /* ghost: id of the k-th committed put */
bool consumed[MAXMSG];           /* ghost: the k-th record was taken */
bool exited[MAXP];

/* ring_lock_side(): wait until the lock is free or its owner is dead */
inline lock(l)
{
    atomic {
        if
        :: l == 0 -> l = me + 1
        :: l != 0 && !alive[l - 1] -> l = me + 1  /* IL_OWNER_DIED: taken over */
        fi
    }
}

inline unlock(l)
{
    assert(l == me + 1);
    l = 0
}

/* il_ec_notify_armed(ec, 1) (eventcount.h, the armed variant; checked
 * alone in eventcount.pml): bit 0 of seq says a waiter may sleep on it.
 * The epoch moves on with the bit kept; a FUTEX_WAKE only while it is set;
 * if that wakes nobody, one FUTEX_WAKE_OP clears it and wakes anyone
 * asleep since, under the futex's lock.  `i` holds what the wake woke. */
inline notify(seqv, waitv, fid, n, i)
{
    if
    :: waitv != 0 ->                   /* fence(seq_cst); load waiters */
        atomic { i = seqv; seqv = i + 2 };   /* fetch_add(seq, 2, release) */
        if
        :: i & 1 ->
            atomic {                   /* FUTEX_WAKE(1): i = how many woke */
                i = 1;
                if
                :: fq[0] == fid -> fq[0] = 0
                :: fq[1] == fid -> fq[1] = 0
                :: fq[2] == fid -> fq[2] = 0
                :: fq[3] == fid -> fq[3] = 0
                :: else -> i = 0
                fi
            };
            if
            :: i == 0 ->
                d_step {               /* FUTEX_WAKE_OP: seq &= ~1, wake all */
                    seqv = seqv & 254;
                    if :: fq[0] == fid -> fq[0] = 0 :: else fi;
                    if :: fq[1] == fid -> fq[1] = 0 :: else fi;
                    if :: fq[2] == fid -> fq[2] = 0 :: else fi;
                    if :: fq[3] == fid -> fq[3] = 0 :: else fi
                }
            :: else
            fi
        :: else
        fi;
        i = 0
    :: else
    fi
}

/* ring_wait(): prepare, check, arm, sleep, cancel; until cond holds */
#define ROOM(need) (closed || tpos - hpos + (need) <= CAP)
#define DATA (closed || tcnt != hcnt)

inline ring_wait(seqv, waitv, fid, cond, key, r)
{
    do
    :: waitv++;                        /* il_ec_prepare: RMW + fence */
        key = seqv;                    /* load seq (acquire) */
        if
        :: cond -> waitv--; break      /* il_ec_cancel */
        :: else
        fi;
        atomic {                       /* il_ec_arm: CAS key -> key | 1 */
            if
            :: key & 1 -> r = 1
            :: seqv == key -> seqv = key | 1; key = key | 1; r = 1
            :: else -> r = 0           /* seq moved: check again */
            fi
        };
        if
        :: r -> r = 0; futex_wait(seqv, key, fid, r) /* il_ec_sleep */
        :: else
        fi;
        waitv--                        /* il_ec_cancel */
    od;
    key = 0; r = 0
}

proctype producer(byte me)
{
    byte n, m, t_c, t_p, h_c, h_p, k, key, r, i;
    bool room, fresh;
    {
    do
    :: n < PUTS ->
        m = me * PUTS + n + 1;
        do
        :: lock(plock);                               /* P1 */
            t_c = tcnt; t_p = tpos;                    /* P2 load tail (relaxed) */
            if
            :: closed -> unlock(plock); goto out       /* P3 QueueClosed */
            :: else
            fi;
            /* P4 il_ring_room: cached_head first, then head (acquire) */
            h_c = cached_hcnt; h_p = cached_hpos; fresh = 0;
            do
            :: t_p - h_p + NEED(m) <= CAP -> room = 1; break
            :: else ->
                if
                :: fresh -> room = 0; break
                :: else
                fi;
                d_step { h_c = hcnt; h_p = hpos };
                d_step { cached_hcnt = h_c; cached_hpos = h_p };
                fresh = 1
            od;
            if
            :: room ->
                /* P5 msg_write: header, then payload, cell by cell */
                cell[t_p % SIZE] = m;
                k = 1;
                do
                :: k <= LEN(m) -> cell[(t_p + k) % SIZE] = m; k++
                :: else -> break
                od;
                skip;
                /* P6 commit: one release store to tail */
                d_step {
                    committed[t_c] = m;
                    tcnt = t_c + 1; tpos = t_p + NEED(m)
                };
                unlock(plock);                         /* P7 */
                notify(ne_seq, ne_waiters, FUTEX_NOT_EMPTY, 1, i); /* P8 */
                break
            :: else ->
                unlock(plock);                         /* P9 full: wait */
                ring_wait(nf_seq, nf_waiters, FUTEX_NOT_FULL, ROOM(NEED(m)), key, r)
            fi;
            t_c = 0; t_p = 0; h_c = 0; h_p = 0; k = 0; room = 0; fresh = 0
        od;
        t_c = 0; t_p = 0; h_c = 0; h_p = 0; k = 0; room = 0; fresh = 0;
        n++
    :: else -> break
    od;
out: skip
    } unless { kill[me] -> die() };
    exited[me] = 1
}

proctype consumer(byte me)
{
    byte h_c, h_p, m, k, key, r, i;
    bool cl, data;
    {
    do
    :: lock(clock);                                    /* G1 */
        cl = closed;                                   /* G2 load flags (acquire) */
        h_c = hcnt; h_p = hpos;                        /* G3 load head (relaxed) */
        /* G4 il_ring_has_data: cached_tail, then tail (acquire) */
        if
        :: cached_tcnt != h_c || cached_tpos != h_p -> data = 1
        :: else ->
            d_step { cached_tcnt = tcnt; cached_tpos = tpos };
            data = (cached_tcnt != h_c || cached_tpos != h_p)
        fi;
        if
        :: data ->
            /* G5 raw_read: header, then payload */
            m = cell[h_p % SIZE];
            assert(m != 0);
            k = 1;
            do
            :: k <= LEN(m) -> assert(cell[(h_p + k) % SIZE] == m); k++
            :: else -> break
            od;
            skip;
            /* G6 commit: one release store to head */
            d_step {
                assert(committed[h_c] == m && !consumed[h_c]);
                consumed[h_c] = 1;
                hcnt = h_c + 1; hpos = h_p + NEED(m)
            };
            unlock(clock);                             /* G7 */
            notify(nf_seq, nf_waiters, FUTEX_NOT_FULL, 1, i) /* G8 */
        :: else ->
            unlock(clock);                             /* G9 */
            if
            :: cl -> break                             /* QueueClosed: closed and drained */
            :: else
            fi;
            ring_wait(ne_seq, ne_waiters, FUTEX_NOT_EMPTY, DATA, key, r)
        fi;
        h_c = 0; h_p = 0; m = 0; k = 0; cl = 0; data = 0
    od
    } unless { kill[me] -> die() };
    exited[me] = 1
}

init
{
    byte i, me;
    bool some_consumer;
    atomic {
        for (i : 0 .. NPROC - 1) { alive[i] = 1 };
        for (i : 0 .. NPROC - 1) {
            if
            :: i < NPROD -> run producer(i)
            :: else -> run consumer(i)
            fi
        }
    };
    /* the parent joins the producers (finished or dead), then q.close() */
    (exited[0] || NPROD < 1) && (exited[1] || NPROD < 2) &&
    (exited[2] || NPROD < 3) && (exited[3] || NPROD < 4);
    me = NPROC;
    lock(plock);                       /* X1 Ring_close under plock */
    closed = 1;
    unlock(plock);
    ne_seq = ne_seq + 2; futex_wake_all(FUTEX_NOT_EMPTY);   /* X2 (a new epoch, bit 0 kept) */
    nf_seq = nf_seq + 2; futex_wake_all(FUTEX_NOT_FULL);    /* X3 */
    exited[0] && exited[1] && exited[2] && (exited[3] || NPROC < 4);
    /* every committed message was taken, unless no consumer lived */
    d_step {
        for (i : NPROD .. NPROC - 1) { some_consumer = some_consumer || alive[i] };
        assert(!some_consumer || hcnt == tcnt);
        for (i : 0 .. hcnt - 1) { assert(consumed[i]) }
    }
}
