/*
 * common.pml -- the pieces every model shares: process identity, death at
 * any step, and the futex(2) system call.  See models/README.md.
 *
 * Processes are numbered 0 .. NPROC-1 (the `me` parameter of each worker
 * proctype); a process's TID in a lock word is me + 1 (0 = no owner).
 *
 * Compile-time switches (spin -D...):
 *   NPROC=n          worker processes (default 3, at most MAXP)
 *   DEATHS=0|1       how many workers the killer may SIGKILL (default 1)
 *   KILLABLE=mask    which workers the killer may choose (bit i = worker i)
 *   NO_TIMEOUT       a futex sleep ends only by a wake: a sleeper left asleep
 *                    while the others finish is an invalid end state, i.e. a
 *                    lost wake-up (use with DEATHS=0)
 *   STALL_TIMEOUT    a sleep may time out only when nothing else can move
 *                    (spin's `timeout`): the slice that rescues a sleeper
 *                    once everything else is stuck; for liveness checks
 *   (default)        a sleep may time out at any moment: covers timeouts,
 *                    spurious wake-ups and EINTR retries; for safety checks
 */
#ifndef NPROC
#define NPROC 3
#endif
#ifndef DEATHS
#define DEATHS 1
#endif
#ifndef KILLABLE
#define KILLABLE 255
#endif
#define MAXP 4

#if defined(NO_TIMEOUT)
#define TIMEOUT_GUARD false
#elif defined(STALL_TIMEOUT)
#define TIMEOUT_GUARD timeout
#else
#define TIMEOUT_GUARD true
#endif

/* futex results */
#define F_AGAIN 0     /* EAGAIN: the word no longer held `expected` */
#define F_SLEEP 1     /* internal: queued */
#define F_WOKEN 2     /* returned 0: woken (or spuriously) */
#define F_TIMEDOUT 3  /* ETIMEDOUT: the relative timeout (slice) passed */

bool alive[MAXP];     /* the kernel's view: /proc/TID exists and is not a zombie */
bool kill[MAXP];      /* set by the killer: the process dies before its next step */
byte fq[MAXP];        /* futex wait queue: id of the word process i sleeps on, 0 none */

/* SIGKILL: the process's locals vanish, shared memory stays as it is; the
 * kernel takes the dead task off any futex wait queue. */
inline die()
{
    d_step { alive[me] = 0; fq[me] = 0 }
}

/* The killer picks at most DEATHS victims among KILLABLE, at any moment. */
active proctype killer()
{
    if
    :: DEATHS > 0 ->
        if
        :: (KILLABLE & 1) && NPROC > 0 -> kill[0] = 1
        :: (KILLABLE & 2) && NPROC > 1 -> kill[1] = 1
        :: (KILLABLE & 4) && NPROC > 2 -> kill[2] = 1
        :: (KILLABLE & 8) && NPROC > 3 -> kill[3] = 1
        fi
    :: skip
    fi
}

/* FUTEX_WAIT(w, expected): compare and queue in one atomic step (the kernel
 * does both under the hash-bucket lock), then block until a FUTEX_WAKE takes
 * us off the queue, or (see TIMEOUT_GUARD) the timeout passes. */
inline futex_wait(w, expected, fid, res)
{
    atomic {
        if
        :: w != expected -> res = F_AGAIN
        :: else -> fq[me] = fid; res = F_SLEEP
        fi
    };
    if
    :: res == F_SLEEP ->
        if
        :: fq[me] == 0 -> res = F_WOKEN
        :: TIMEOUT_GUARD ->
            d_step {
                if
                :: fq[me] != 0 -> fq[me] = 0; res = F_TIMEDOUT
                :: else -> res = F_WOKEN
                fi
            }
        fi
    :: else -> skip
    fi
}

/* FUTEX_WAKE(w, 1): take one sleeper of word fid off the queue, any one
 * (the kernel's order is by priority, then FIFO; we allow every order). */
inline futex_wake1(fid)
{
    atomic {
        if
        :: fq[0] == fid -> fq[0] = 0
        :: fq[1] == fid -> fq[1] = 0
        :: fq[2] == fid -> fq[2] = 0
        :: fq[3] == fid -> fq[3] = 0
        :: else -> skip
        fi
    }
}

/* FUTEX_WAKE(w, INT_MAX) */
inline futex_wake_all(fid)
{
    d_step {
        if :: fq[0] == fid -> fq[0] = 0 :: else fi;
        if :: fq[1] == fid -> fq[1] = 0 :: else fi;
        if :: fq[2] == fid -> fq[2] = 0 :: else fi;
        if :: fq[3] == fid -> fq[3] = 0 :: else fi
    }
}

/* FUTEX_WAKE(w, n), with a local counter i */
inline futex_wake_n(fid, n, i)
{
    atomic {
        i = 0;
        do
        :: i < n ->
            if
            :: fq[0] == fid -> fq[0] = 0
            :: fq[1] == fid -> fq[1] = 0
            :: fq[2] == fid -> fq[2] = 0
            :: fq[3] == fid -> fq[3] = 0
            :: else -> skip
            fi;
            i++
        :: else -> break
        od;
        i = 0
    }
}
