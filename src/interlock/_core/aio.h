/*
 * aio.h -- the asyncio helper's one sleep over many futex words (the
 * algorithm and why: aio.c).  No Python.h: bind_aio.c is the binding.
 */
#ifndef INTERLOCK_AIO_H
#define INTERLOCK_AIO_H

#include <stdint.h>

#include "eventcount.h"

enum { AIO_READABLE = 0, AIO_WRITABLE = 1, AIO_UNLOCKED = 2, AIO_SET = 3 };

typedef struct {
    void *p;                /* the struct in the segment: il_ring_t, il_mutex_t, il_event_t */
    int kind;               /* AIO_* */
    uint64_t arg;           /* WRITABLE: record bytes; UNLOCKED: owner TID to watch, 0 = any;
                               SET: the Event generation the wait began at (sync.h) */
    il_eventcount_t *ec;    /* counted in this eventcount while armed, or NULL */
    _Atomic uint32_t *word; /* what to sleep on */
    uint32_t val;           /* ... while it holds this */
    int ready;              /* out: the condition held when disarmed */
} il_aio_target_t;

/* Arm every target, sleep (no timeout) until one may be ready or the
 * doorbell moves past `bell`, disarm.  Call without the GIL.  Returns the
 * index of the target whose word woke us, n for the doorbell, or -1. */
int il_aio_wait(il_aio_target_t *ts, int n, uint32_t bell);
uint32_t il_aio_bell(void);
/* Ring the doorbell: the helper looks at its targets again. */
void il_aio_ring(void);
/* A wake-up taken for p and not used: wake one more sleeper of its kind. */
void il_aio_pass_on(void *p, int kind);

#endif
