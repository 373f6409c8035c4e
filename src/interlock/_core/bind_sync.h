/*
 * bind_sync.h -- what the bindings of the sync family (bind_semaphore.c,
 * bind_rwlock.c, bind_event.c, bind_barrier.c, bind_condition.c) share,
 * over sync.h: attaching to a sync segment, the guard, the one wait loop
 * and the statistics.
 *
 * As for every type: the GIL is held on every fast path (the guard is taken
 * with one CAS) and released only to wait -- for the guard if another
 * process holds it, or on the eventcount.  A wait sleeps in slices of at
 * most IL_SYNC_SLICE_NS; between slices the waiter runs the signal handlers
 * and, at most once per slice for the whole object, sweeps the holder table
 * for the dead (sync.h).
 */
#ifndef INTERLOCK_BIND_SYNC_H
#define INTERLOCK_BIND_SYNC_H

#include "binding.h"
#include "sync.h"

typedef ShmObject SyncObject; /* binding.h; `hint`: this process's slot */

#define HEAD(self) ((il_sync_head_t *)((SyncObject *)(self))->p)

/* Attach (create: initialise) a sync object of `kind` at offset; an
 * attach takes nslots from the segment and checks kind and size. */
int sync_attach(SyncObject *self, PyObject *buffer, Py_ssize_t offset, int kind, int create,
                uint32_t nslots);
/* Take the guard: one CAS with the GIL; the GIL is released only if another
 * task holds it. */
void guard_lock(SyncObject *self);
/* Sweep for the dead if nobody did in the last slice (force: now); wake
 * everyone if something was recovered.  Called without the guard. */
int maybe_sweep(SyncObject *self, int force);
/* (block=True, timeout=None) of acquire-like methods, by il_parse_timeout. */
int parse_block_timeout(int rule, PyObject *args, PyObject *kwds, int64_t *deadline);
/* Wait (GIL released) until the eventcount moves past `key` or `slice` ns
 * pass: il_spin_until first, then FUTEX_WAIT. */
int sync_sleep(SyncObject *self, il_sync_head_t *h, uint32_t key, int64_t slice);

/* The wait loop shared by every blocking operation.  `step` runs under the
 * guard and returns IL_OK/IL_OWNER_DIED/..., or IL_WAIT with *key prepared.
 * Returns the final step result, IL_TIMEDOUT, or -1 with an exception (a
 * signal handler raised: `cancel` (may be NULL) is run under the guard). */
typedef int (*step_fn)(SyncObject *self, int may_wait, uint32_t *key, uint32_t *dead, void *arg);
typedef void (*cancel_fn)(SyncObject *self, void *arg);
int wait_loop(SyncObject *self, step_fn step, cancel_fn cancel, void *arg, int64_t deadline,
              uint32_t *dead);

/* Slot i of the holder table, or NULL with ValueError. */
il_sync_slot_t *slot_at(SyncObject *self, unsigned int i);
/* The same for a slot index passed from Python (checks the object first). */
il_sync_slot_t *slot_arg(SyncObject *self, PyObject *arg);

/* Statistics: the head's counters and the holder table, as a new dict to
 * which each type adds its own with IL_PUT (which returns NULL from the
 * caller on failure, with `d` released). */
PyObject *Sync_stats_common(SyncObject *self);
PyObject *Sync_sweep(SyncObject *self, PyObject *unused);
#define IL_PUT(key, val)                                                                    \
    do {                                                                                 \
        PyObject *v_ = PyLong_FromUnsignedLongLong((unsigned long long)(val));           \
        if (!v_ || PyDict_SetItemString(d, key, v_) < 0) {                               \
            Py_XDECREF(v_);                                                              \
            Py_DECREF(d);                                                                \
            return NULL;                                                                 \
        }                                                                                \
        Py_DECREF(v_);                                                                   \
    } while (0)

#define COMMON_METHODS                                                                   \
    {"_detach", (PyCFunction)shm_detach, METH_NOARGS, NULL},                            \
        {"_sweep", (PyCFunction)Sync_sweep, METH_NOARGS,                                 \
         "Recover what dead processes hold now; returns slots freed."}

#endif
