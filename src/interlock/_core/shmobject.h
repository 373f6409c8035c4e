/*
 * shmobject.h -- the Python object that every type of the core is: a view
 * of one struct in a segment (module.c: Ring, Mutex; sync_module.c: the sync
 * family).
 *
 * It holds a buffer export on the segment's mapping, so the mapping cannot
 * be closed under it.  `busy` counts calls in flight with the GIL released,
 * so that _detach() from another thread cannot unmap under a sleeper.
 *
 * `pid` is the process that uses the object through this handle.  A forked
 * child inherits the handle but holds no slot in the segment's process
 * table (docs/design/segment.md, "Fork"): its first call through the handle
 * finds pid != il_self_pid() (one compare: the pid is cached, reset by
 * pthread_atfork) and calls the Python object's _adopt(), which claims the
 * child's slot.  Types without _adopt (the segment's own meta lock, the
 * deadlock tooling's table locks) just take the new pid.
 */
#ifndef INTERLOCK_SHMOBJECT_H
#define INTERLOCK_SHMOBJECT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "platform.h"

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    void *p;             /* our struct in the segment; NULL once detached */
    int busy;            /* calls in flight with the GIL released */
    int spin_ns;         /* Ring: adaptive spin budget of ring_wait */
    unsigned spin_probe; /* Ring: waits since the budget fell to 0 */
    uint32_t hint;       /* sync family: index of this process's slot */
    unsigned fruitless;  /* Ring: wakes in a row that woke nobody (il_ec_repair) */
    uint32_t pid;        /* the process using it through this handle (adopted) */
    unsigned char roles; /* Ring: roles told to _note_role by this process (module.c) */
} ShmObject;

/* Adaptive spinning before a futex sleep (ring_wait in module.c, wait_loop
 * in sync_module.c), per object and process, like glibc's adaptive
 * mutexes: a spin that ended with its condition met restores the full
 * budget, one that ended in a sleep anyway shrinks it by a quarter, down to
 * 0 (after about ten fruitless spins); at 0, one wait in 64 probes with
 * IL_SPIN_MIN_NS.  So two processes on two CPUs hand over in well under a
 * microsecond, and two processes pinned to one CPU (where a spinner only
 * delays the peer) stop spinning after a few waits.  Never with one CPU
 * online.  Call both with the GIL held (the fields are per object). */
#define IL_SPIN_MAX_NS 30000
#define IL_SPIN_MIN_NS 2000

static inline int shm_spin_budget(ShmObject *self)
{
    int budget = self->spin_ns;
    if (budget == 0 && (++self->spin_probe & 63) == 0)
        budget = IL_SPIN_MIN_NS;
    return il_ncpus() > 1 ? budget : 0;
}

static inline void shm_spin_adapt(ShmObject *self, int budget, int fruitful)
{
    if (budget <= 0)
        return;
    if (fruitful)
        self->spin_ns = IL_SPIN_MAX_NS;
    else
        self->spin_ns = budget * 3 / 4 < IL_SPIN_MIN_NS ? 0 : budget * 3 / 4;
}

/* First use in a process that did not make the handle (a fork child). */
static int shm_adopt(ShmObject *self)
{
    uint32_t mine = il_self_pid();
    self->pid = mine; /* first: _adopt may use the object (and re-enter) */
    self->roles = 0;  /* the child's slot has none yet */
    PyObject *fn = PyObject_GetAttrString((PyObject *)self, "_adopt");
    if (!fn) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            goto fail;
        PyErr_Clear();
        return 0;
    }
    PyObject *r = PyObject_CallNoArgs(fn);
    Py_DECREF(fn);
    if (!r)
        goto fail;
    Py_DECREF(r);
    return 0;
fail:
    self->pid = 0; /* try again on the next call */
    return -1;
}

static inline int shm_check(ShmObject *self)
{
    if (!self->p) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed (detached) interlock object");
        return -1;
    }
    if (__builtin_expect(self->pid != il_self_pid_fast(), 0))
        return shm_adopt(self);
    return 0;
}

static inline PyObject *shm_detach(ShmObject *self, PyObject *unused)
{
    (void)unused;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot detach: another thread is blocked in an operation on this object");
        return NULL;
    }
    if (self->p) {
        self->p = NULL;
        PyBuffer_Release(&self->view);
    }
    Py_RETURN_NONE;
}

static inline void shm_dealloc(ShmObject *self)
{
    PyObject_GC_UnTrack(self);
    if (self->p) {
        self->p = NULL;
        PyBuffer_Release(&self->view);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static inline int shm_traverse(ShmObject *self, visitproc visit, void *arg)
{
    if (self->p)
        Py_VISIT(self->view.obj);
    return 0;
}

#endif
