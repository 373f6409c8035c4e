/*
 * sync_module.c -- the Python types over sync.h: Semaphore, RWLock, Event,
 * Barrier and Condition (interlock._sync subclasses them).
 *
 * As in module.c: the GIL is held on every fast path (the guard is taken
 * with one CAS) and released only to wait -- for the guard if another
 * process holds it, or on the eventcount.  A wait sleeps in slices of at
 * most IL_SYNC_SLICE_NS; between slices the waiter runs the signal handlers
 * and, at most once per slice for the whole object, sweeps the holder table
 * for the dead (sync.h).
 */
#define PY_SSIZE_T_CLEAN
#include "shmobject.h"
#include <Python.h>

#include <math.h>

#include "aio.h"
#include "sync.h"

typedef ShmObject SyncObject; /* shmobject.h; `hint`: this process's slot */

#define HEAD(self) ((il_sync_head_t *)((SyncObject *)(self))->p)

static PyObject *BrokenBarrierError, *str_on_owner_died;

/* ------------------------------------------------------------- plumbing */

static int sync_attach(SyncObject *self, PyObject *buffer, Py_ssize_t offset, int kind,
                       int create, uint32_t nslots)
{
    if (self->p) {
        PyErr_SetString(PyExc_RuntimeError, "object is already initialised");
        return -1;
    }
    if (PyObject_GetBuffer(buffer, &self->view, PyBUF_WRITABLE) < 0)
        return -1;
    if (offset < 0 || offset % IL_CACHELINE != 0 || offset > self->view.len) {
        PyBuffer_Release(&self->view);
        PyErr_SetString(PyExc_ValueError, "misaligned or out-of-range offset");
        return -1;
    }
    il_sync_head_t *h = (il_sync_head_t *)((char *)self->view.buf + offset);
    size_t have = (size_t)(self->view.len - offset);
    if (!create && have >= sizeof(il_sync_head_t))
        nslots = h->nslots; /* attach: the segment says how big it is */
    size_t need = il_sync_size(kind, nslots);
    if (nslots > IL_SYNC_MAX_SLOTS || need > have ||
        (!create && (h->kind != kind))) {
        PyBuffer_Release(&self->view);
        PyErr_Format(PyExc_ValueError, "segment too small or of another kind (need %zu bytes, "
                     "have %zu)", need, have);
        return -1;
    }
    if (create)
        il_sync_init(h, kind, nslots);
    self->p = h;
    self->pid = il_self_pid(); /* made here, after this process claimed its slot */
    self->hint = UINT32_MAX;
    self->spin_ns = IL_SPIN_MAX_NS;
    return 0;
}

#define sync_check shm_check

#define sync_detach shm_detach

#define sync_dealloc shm_dealloc

#define sync_traverse shm_traverse

/* Take the guard: one CAS with the GIL; the GIL is released only if another
 * task holds it. */
static void guard_lock(SyncObject *self)
{
    il_sync_head_t *h = HEAD(self);
    if (il_sync_guard_trylock(h))
        return;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    il_sync_guard_lock(h);
    Py_END_ALLOW_THREADS
    self->busy--;
}

/* Sweep for the dead if nobody did in the last slice; wake everyone if
 * something was recovered.  Called without the guard. */
static int maybe_sweep(SyncObject *self, int force)
{
    il_sync_head_t *h = HEAD(self);
    /* relaxed: a rate-limit hint; two sweeps at once are harmless */
    uint64_t last = atomic_load_explicit(&h->last_sweep_ns, memory_order_relaxed);
    if (!force && (uint64_t)il_now_ns() - last < (uint64_t)IL_SYNC_SLICE_NS)
        return 0;
    guard_lock(self);
    int freed = il_sync_sweep(h);
    il_sync_guard_unlock(h);
    if (freed)
        il_ec_notify(&h->ec, INT32_MAX);
    return freed;
}

/* block/timeout -> deadline (0: try once; IL_FOREVER), threading's rules:
 * timeout=None or -1 means forever; a timeout with block=False is an error. */
static int get_deadline(PyObject *block, PyObject *timeout, int64_t *deadline)
{
    int b = 1;
    if (block && (b = PyObject_IsTrue(block)) < 0)
        return -1;
    int has_t = timeout && timeout != Py_None;
    if (!b) {
        if (has_t) {
            PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
            return -1;
        }
        *deadline = 0;
        return 0;
    }
    if (!has_t) {
        *deadline = IL_FOREVER;
        return 0;
    }
    double t = PyFloat_AsDouble(timeout);
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    if (isnan(t)) {
        PyErr_SetString(PyExc_ValueError, "timeout must not be NaN");
        return -1;
    }
    if (t == -1.0) {
        *deadline = IL_FOREVER;
        return 0;
    }
    if (t < 0) {
        PyErr_SetString(PyExc_ValueError, "timeout value must be a non-negative number");
        return -1;
    }
    *deadline = t == 0 ? 0 : il_deadline_after(t);
    return 0;
}

static int parse_block_timeout(const char *fname, PyObject *args, PyObject *kwds,
                               int64_t *deadline, int with_block)
{
    static char *kw2[] = {"block", "timeout", NULL};
    static char *kw1[] = {"timeout", NULL};
    PyObject *block = NULL, *timeout = NULL;
    if (PyTuple_GET_SIZE(args) == 0 && (!kwds || PyDict_GET_SIZE(kwds) == 0)) {
        *deadline = IL_FOREVER; /* the common call, without the parser's cost */
        return 0;
    }
    if (with_block) {
        if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO", kw2, &block, &timeout))
            return -1;
    } else if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O", kw1, &timeout)) {
        return -1;
    }
    (void)fname;
    return get_deadline(block, timeout, deadline);
}

/* Wait (GIL released) until the eventcount moves past `key` or `slice` ns
 * pass: an adaptive spin first (shmobject.h: a notifier on another CPU bumps
 * seq within microseconds), then FUTEX_WAIT.  Returns il_ec_sleep's result
 * (IL_OK when the spin saw the bump). */
static int sync_sleep(SyncObject *self, il_sync_head_t *h, uint32_t key, int64_t slice)
{
    int sr = IL_OK, spun = 0;
    int budget = shm_spin_budget(self);
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    if (budget > 0) {
        int64_t until = il_now_ns() + budget;
        for (int i = 0;; i++) {
            /* acquire: as il_ec_prepare's load of seq */
            if (atomic_load_explicit(&h->ec.seq, memory_order_acquire) != key) {
                spun = 1;
                break;
            }
            il_cpu_relax();
            if ((i & 31) == 31 && il_now_ns() >= until)
                break;
        }
    }
    if (!spun) {
        sr = il_ec_sleep(&h->ec, key, slice);
        if (sr == IL_TIMEDOUT) /* a whole slice with no wake: uncount dead waiters */
            il_ec_repair(&h->ec);
    }
    Py_END_ALLOW_THREADS
    self->busy--;
    shm_spin_adapt(self, budget, spun);
    return sr;
}

/* The wait loop shared by every blocking operation.  `step` runs under the
 * guard and returns IL_OK/IL_OWNER_DIED/..., or IL_WAIT with *key prepared.
 * Returns the final step result, IL_TIMEDOUT, or -1 with an exception (a
 * signal handler raised: `cancel` (may be NULL) is run under the guard). */
typedef int (*step_fn)(SyncObject *self, int may_wait, uint32_t *key, uint32_t *dead, void *arg);
typedef void (*cancel_fn)(SyncObject *self, void *arg);

static int wait_loop(SyncObject *self, step_fn step, cancel_fn cancel, void *arg, int64_t deadline,
                     uint32_t *dead)
{
    il_sync_head_t *h = HEAD(self);
    int counted = 0, swept_last = 0;
    for (;;) {
        uint32_t key = 0;
        guard_lock(self);
        int r = step(self, deadline != 0, &key, dead, arg);
        if (r == IL_WAIT && deadline != IL_FOREVER && il_now_ns() >= deadline) {
            il_ec_cancel(&h->ec);
            r = IL_TIMEDOUT;
        }
        il_sync_guard_unlock(h);
        if (r == IL_TIMEDOUT && !swept_last && maybe_sweep(self, 0)) {
            swept_last = 1; /* something was recovered: one more try */
            continue;
        }
        if (r != IL_WAIT) {
            if (r == IL_TIMEDOUT) {
                if (cancel) {
                    guard_lock(self);
                    cancel(self, arg);
                    il_sync_guard_unlock(h);
                }
                atomic_fetch_add_explicit(&h->timeouts, 1, memory_order_relaxed);
            }
            if (counted) /* relaxed: statistics */
                atomic_fetch_sub_explicit(&h->sleepers, 1, memory_order_relaxed);
            return r;
        }
        swept_last = 0;
        if (!counted) {
            counted = 1;
            atomic_fetch_add_explicit(&h->contentions, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&h->sleepers, 1, memory_order_relaxed);
        }
        int64_t slice = IL_SYNC_SLICE_NS;
        if (deadline != IL_FOREVER) {
            int64_t left = deadline - il_now_ns();
            if (left < slice)
                slice = left > 0 ? left : 0;
        }
        int sr = sync_sleep(self, h, key, slice);
        il_ec_cancel(&h->ec);
        if (sr == IL_INTR && PyErr_CheckSignals() < 0) {
            if (cancel) {
                guard_lock(self);
                cancel(self, arg);
                il_sync_guard_unlock(h);
            }
            atomic_fetch_sub_explicit(&h->sleepers, 1, memory_order_relaxed);
            return -1;
        }
        maybe_sweep(self, 0);
    }
}

/* After an IL_OWNER_DIED take: tell the Python layer (Lock's convention).
 * Returns 0, or -1 with the exception it raised. */
static int report_death(PyObject *self, uint32_t dead)
{
    PyObject *pid = PyLong_FromUnsignedLong(dead);
    if (!pid)
        return -1;
    PyObject *res = PyObject_CallMethodObjArgs(self, str_on_owner_died, pid, NULL);
    Py_DECREF(pid);
    if (!res)
        return -1;
    Py_DECREF(res);
    return 0;
}

static PyObject *head_stats(il_sync_head_t *h, PyObject *d)
{
    /* relaxed: a racy snapshot for display */
#define PUT(key, val)                                                                    \
    do {                                                                                 \
        PyObject *v_ = PyLong_FromUnsignedLongLong((unsigned long long)(val));           \
        if (!v_ || PyDict_SetItemString(d, key, v_) < 0) {                               \
            Py_XDECREF(v_);                                                              \
            Py_DECREF(d);                                                                \
            return NULL;                                                                 \
        }                                                                                \
        Py_DECREF(v_);                                                                   \
    } while (0)
    PUT("acquisitions", atomic_load_explicit(&h->acquisitions, memory_order_relaxed));
    PUT("contentions", atomic_load_explicit(&h->contentions, memory_order_relaxed));
    PUT("timeouts", atomic_load_explicit(&h->timeouts, memory_order_relaxed));
    PUT("owner_deaths", atomic_load_explicit(&h->owner_deaths, memory_order_relaxed));
    PUT("waiters", atomic_load_explicit(&h->sleepers, memory_order_relaxed));
    PUT("recovered", atomic_load_explicit(&h->recovered, memory_order_relaxed));
    return d;
}

/* Slots as a list of (pid, tid, count, state) for statistics. */
static PyObject *slots_list(il_sync_head_t *h)
{
    il_sync_slot_t *slots = il_sync_slots(h);
    PyObject *l = PyList_New(0);
    for (uint32_t i = 0; l && slots && i < h->nslots; i++) {
        /* relaxed: snapshot */
        uint32_t pid = atomic_load_explicit(&slots[i].pid, memory_order_relaxed);
        if (!pid || atomic_load_explicit(&slots[i].state, memory_order_relaxed) ==
                        IL_SLOT_RECOVERED) /* a report still to make, not a holder */
            continue;
        PyObject *t = Py_BuildValue(
            "(IIII)", pid, atomic_load_explicit(&slots[i].tid, memory_order_relaxed),
            atomic_load_explicit(&slots[i].count, memory_order_relaxed),
            atomic_load_explicit(&slots[i].state, memory_order_relaxed));
        if (!t || PyList_Append(l, t) < 0) {
            Py_XDECREF(t);
            Py_CLEAR(l);
        }
        Py_XDECREF(t);
    }
    return l;
}

static PyObject *Sync_stats_common(SyncObject *self)
{
    if (sync_check(self) < 0)
        return NULL;
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    if (!head_stats(HEAD(self), d))
        return NULL;
    PyObject *sl = slots_list(HEAD(self));
    if (!sl || PyDict_SetItemString(d, "slots", sl) < 0) {
        Py_XDECREF(sl);
        Py_DECREF(d);
        return NULL;
    }
    Py_DECREF(sl);
    return d;
}

static PyObject *Sync_sweep(SyncObject *self, PyObject *unused)
{
    if (sync_check(self) < 0)
        return NULL;
    return PyLong_FromLong(maybe_sweep(self, 1));
}

#define COMMON_METHODS                                                                   \
    {"_detach", (PyCFunction)sync_detach, METH_NOARGS, NULL},                            \
        {"_sweep", (PyCFunction)Sync_sweep, METH_NOARGS,                                 \
         "Recover what dead processes hold now; returns slots freed."}

#define SYNC_TYPE(var, pyname, init, methods, getset, doc)                               \
    static PyTypeObject var = {                                                          \
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "interlock._core." pyname,              \
        .tp_basicsize = sizeof(SyncObject),                                              \
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,       \
        .tp_doc = doc,                                                                   \
        .tp_new = PyType_GenericNew,                                                     \
        .tp_init = (initproc)init,                                                       \
        .tp_dealloc = (destructor)sync_dealloc,                                          \
        .tp_traverse = (traverseproc)sync_traverse,                                      \
        .tp_methods = methods,                                                           \
        .tp_getset = getset,                                                             \
    }

/* ============================================================ Semaphore */

#define SEM(self) ((il_sem_t *)((SyncObject *)(self))->p)

static int Semaphore_init(SyncObject *self, PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"buffer", "offset", "create", "value", "maxvalue", "nslots", NULL};
    PyObject *buffer;
    Py_ssize_t offset;
    int create = 0;
    unsigned int value = 1, maxvalue = UINT32_MAX, nslots = 64;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On|pIII:Semaphore", kw, &buffer, &offset,
                                     &create, &value, &maxvalue, &nslots))
        return -1;
    if (sync_attach(self, buffer, offset, IL_SYNC_SEMAPHORE, create, nslots) < 0)
        return -1;
    if (create) {
        atomic_store_explicit(&SEM(self)->value, value, memory_order_relaxed); /* unpublished */
        SEM(self)->maxvalue = maxvalue;
    }
    return 0;
}

static int sem_step(SyncObject *self, int may_wait, uint32_t *key, uint32_t *dead, void *arg)
{
    return il_sem_try_acquire(SEM(self), &self->hint, may_wait, key, dead);
}

static int sem_acquire(SyncObject *self, int64_t deadline, int in_enter)
{
    if (sync_check(self) < 0)
        return -1;
    uint32_t dead = 0, key;
    int r;
    il_sync_head_t *h = HEAD(self);
    if (il_sync_guard_trylock(h)) { /* fast path: no wait loop */
        r = il_sem_try_acquire(SEM(self), &self->hint, 0, &key, &dead);
        il_sync_guard_unlock(h);
        if (r == IL_TIMEDOUT)
            r = wait_loop(self, sem_step, NULL, NULL, deadline, &dead);
    } else {
        r = wait_loop(self, sem_step, NULL, NULL, deadline, &dead);
    }
    if (r < 0)
        return -1;
    if (r == IL_TIMEDOUT)
        return 0;
    if (r == IL_OWNER_DIED && report_death((PyObject *)self, dead) < 0) {
        if (in_enter) {
            guard_lock(self);
            il_sem_release(SEM(self), 1, &self->hint);
            il_sync_guard_unlock(h);
            il_ec_notify(&h->ec, 1);
        }
        return -1;
    }
    return 1;
}

static PyObject *Semaphore_acquire(SyncObject *self, PyObject *args, PyObject *kwds)
{
    int64_t deadline = IL_FOREVER;
    if ((args && PyTuple_GET_SIZE(args)) || kwds) {
        if (parse_block_timeout("acquire", args, kwds, &deadline, 1) < 0)
            return NULL;
    }
    int r = sem_acquire(self, deadline, 0);
    return r < 0 ? NULL : PyBool_FromLong(r);
}

static PyObject *Semaphore_enter(SyncObject *self, PyObject *unused)
{
    int r = sem_acquire(self, IL_FOREVER, 1);
    if (r < 0)
        return NULL;
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *sem_release_n(SyncObject *self, unsigned long n)
{
    if (sync_check(self) < 0)
        return NULL;
    if (n < 1) {
        PyErr_SetString(PyExc_ValueError, "n must be one or more");
        return NULL;
    }
    il_sync_head_t *h = HEAD(self);
    guard_lock(self);
    int r = il_sem_release(SEM(self), (uint32_t)n, &self->hint);
    il_sync_guard_unlock(h);
    if (r == IL_OVERFLOW) {
        PyErr_SetString(PyExc_ValueError, "Semaphore released too many times");
        return NULL;
    }
    il_ec_notify(&h->ec, (int)(n > INT32_MAX ? INT32_MAX : n));
    Py_RETURN_NONE;
}

static PyObject *Semaphore_release(SyncObject *self, PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"n", NULL};
    unsigned long n = 1;
    if ((args && PyTuple_GET_SIZE(args)) || kwds) {
        if (!PyArg_ParseTupleAndKeywords(args, kwds, "|k:release", kw, &n))
            return NULL;
    }
    return sem_release_n(self, n);
}

static PyObject *Semaphore_exit(SyncObject *self, PyObject *args)
{
    return sem_release_n(self, 1);
}

static PyObject *Semaphore_get_value(SyncObject *self, PyObject *unused)
{
    if (sync_check(self) < 0)
        return NULL;
    /* relaxed: a snapshot, like sem_getvalue */
    return PyLong_FromUnsignedLong(atomic_load_explicit(&SEM(self)->value, memory_order_relaxed));
}

static PyObject *Semaphore_stats(SyncObject *self, PyObject *unused)
{
    PyObject *d = Sync_stats_common(self);
    if (!d)
        return NULL;
    il_sem_t *s = SEM(self);
    PUT("value", atomic_load_explicit(&s->value, memory_order_relaxed));
    PUT("maxvalue", s->maxvalue);
    PUT("untracked", atomic_load_explicit(&s->untracked, memory_order_relaxed));
    return d;
}

static PyMethodDef Semaphore_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))Semaphore_acquire, METH_VARARGS | METH_KEYWORDS,
     "acquire($self, block=True, timeout=None)\n--\n\n"
     "Take one unit; return True if taken, False on timeout (or at once with "
     "block=False and no unit free).\n\n"
     "Raises:\n"
     "    OwnerDiedError: on_owner_death=\"raise\" and the unit taken was recovered "
     "from a dead process (the unit is held when this is raised).\n"
     "    ValueError: a timeout with block=False, or a negative or NaN timeout.\n\n"
     "If a process dies: units are recorded per process; the units of a process that "
     "died holding them are recovered by a waiter within a slice (0.1 s) and the "
     "next taker is told (OwnerDiedWarning by default)."},
    {"release", (PyCFunction)(void (*)(void))Semaphore_release, METH_VARARGS | METH_KEYWORDS,
     "release($self, n=1)\n--\n\n"
     "Give back n units and wake as many waiters. Any thread of a process may "
     "release; a process that holds no unit may release too (a signal).\n\n"
     "Raises:\n"
     "    ValueError: n < 1, or a BoundedSemaphore released above its initial "
     "value."},
    {"__enter__", (PyCFunction)Semaphore_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Semaphore_exit, METH_VARARGS, NULL},
    {"get_value", (PyCFunction)Semaphore_get_value, METH_NOARGS,
     "get_value($self, /)\n--\n\nUnits free now (a snapshot; units of dead processes "
     "count as held until recovered)."},
    {"_stats", (PyCFunction)Semaphore_stats, METH_NOARGS, NULL},
    COMMON_METHODS,
    {NULL}};

SYNC_TYPE(SemaphoreType, "Semaphore", Semaphore_init, Semaphore_methods, NULL,
          "Semaphore(buffer, offset, create=False, value=1, maxvalue=2**32-1, nslots=64)\n\n"
          "A robust process-shared semaphore (sync.h).  Used through interlock.Semaphore.");

/* =============================================================== RWLock */

#define RW(self) ((il_rwlock_t *)((SyncObject *)(self))->p)

static int RWLock_init(SyncObject *self, PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"buffer", "offset", "create", "nslots", NULL};
    PyObject *buffer;
    Py_ssize_t offset;
    int create = 0;
    unsigned int nslots = 64;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On|pI:RWLock", kw, &buffer, &offset, &create,
                                     &nslots))
        return -1;
    return sync_attach(self, buffer, offset, IL_SYNC_RWLOCK, create, nslots);
}

static int rd_step(SyncObject *self, int may_wait, uint32_t *key, uint32_t *dead, void *arg)
{
    return il_rw_try_read(RW(self), &self->hint, may_wait, key, dead);
}

static int wr_step(SyncObject *self, int may_wait, uint32_t *key, uint32_t *dead, void *arg)
{
    return il_rw_try_write(RW(self), (il_sync_slot_t **)arg, may_wait, key, dead);
}

static void wr_cancel(SyncObject *self, void *arg)
{
    il_sync_slot_t **ws = (il_sync_slot_t **)arg;
    il_rw_cancel_write(RW(self), *ws);
    *ws = NULL;
}

static PyObject *rw_finish(SyncObject *self, int r, uint32_t dead, int writer)
{
    if (r < 0)
        return NULL;
    if (r == IL_TIMEDOUT)
        Py_RETURN_FALSE;
    if (r == IL_DEADLK) {
        PyErr_SetString(PyExc_RuntimeError,
                        writer ? "this thread already holds the write lock: a second acquire "
                                 "would wait forever"
                               : "this thread holds the write lock: a read acquire would wait "
                                 "forever");
        return NULL;
    }
    if (r == IL_OWNER_DIED && report_death((PyObject *)self, dead) < 0)
        return NULL; /* held, like Lock's "raise" mode */
    Py_RETURN_TRUE;
}

static PyObject *RWLock_acquire_read(SyncObject *self, PyObject *args, PyObject *kwds)
{
    int64_t deadline = IL_FOREVER;
    if (sync_check(self) < 0 || parse_block_timeout("acquire_read", args, kwds, &deadline, 1) < 0)
        return NULL;
    uint32_t dead = 0, key;
    il_sync_head_t *h = HEAD(self);
    int r = IL_TIMEDOUT;
    if (il_sync_guard_trylock(h)) {
        r = il_rw_try_read(RW(self), &self->hint, 0, &key, &dead);
        il_sync_guard_unlock(h);
        if (r == IL_OK)
            Py_RETURN_TRUE;
    }
    if (r == IL_TIMEDOUT)
        r = wait_loop(self, rd_step, NULL, NULL, deadline, &dead);
    if (r == IL_OK)
        Py_RETURN_TRUE;
    return rw_finish(self, r, dead, 0);
}

static PyObject *RWLock_release_read(SyncObject *self, PyObject *unused)
{
    if (sync_check(self) < 0)
        return NULL;
    il_sync_head_t *h = HEAD(self);
    guard_lock(self);
    int r = il_rw_release_read(RW(self), &self->hint);
    uint32_t left = atomic_load_explicit(&RW(self)->readers, memory_order_relaxed);
    il_sync_guard_unlock(h);
    if (r == IL_PERM) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired read lock");
        return NULL;
    }
    if (left == 0)
        il_ec_notify(&h->ec, INT32_MAX);
    Py_RETURN_NONE;
}

static PyObject *RWLock_acquire_write(SyncObject *self, PyObject *args, PyObject *kwds)
{
    int64_t deadline = IL_FOREVER;
    if (sync_check(self) < 0 || parse_block_timeout("acquire_write", args, kwds, &deadline, 1) < 0)
        return NULL;
    uint32_t dead = 0;
    il_sync_slot_t *ws = NULL;
    int r = wait_loop(self, wr_step, wr_cancel, &ws, deadline, &dead);
    if (r == IL_TIMEDOUT || r < 0)
        il_ec_notify(&HEAD(self)->ec, INT32_MAX); /* readers held back by our slot */
    if (r == IL_OK)
        Py_RETURN_TRUE;
    return rw_finish(self, r, dead, 1);
}

static PyObject *RWLock_release_write(SyncObject *self, PyObject *unused)
{
    if (sync_check(self) < 0)
        return NULL;
    il_sync_head_t *h = HEAD(self);
    guard_lock(self);
    int r = il_rw_release_write(RW(self));
    il_sync_guard_unlock(h);
    if (r == IL_PERM) {
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot release the write lock: this thread does not hold it");
        return NULL;
    }
    il_ec_notify(&h->ec, INT32_MAX);
    Py_RETURN_NONE;
}

static PyObject *RWLock_stats(SyncObject *self, PyObject *unused)
{
    PyObject *d = Sync_stats_common(self);
    if (!d)
        return NULL;
    il_rwlock_t *l = RW(self);
    PUT("readers", atomic_load_explicit(&l->readers, memory_order_relaxed));
    PUT("writer_tid", atomic_load_explicit(&l->writer_tid, memory_order_relaxed));
    PUT("writer_pid", atomic_load_explicit(&l->writer_pid, memory_order_relaxed));
    PUT("writers_waiting", atomic_load_explicit(&l->writers_waiting, memory_order_relaxed));
    PUT("write_acquisitions", atomic_load_explicit(&l->write_acquisitions, memory_order_relaxed));
    return d;
}

static PyMethodDef RWLock_methods[] = {
    {"acquire_read", (PyCFunction)(void (*)(void))RWLock_acquire_read, METH_VARARGS | METH_KEYWORDS,
     "acquire_read($self, block=True, timeout=None)\n--\n\n"
     "Take a read hold (shared with other readers); True if taken, False on "
     "timeout. Waits behind a waiting writer, except in a process that already holds "
     "a read.\n\n"
     "Raises:\n"
     "    OwnerDiedError: on_owner_death=\"raise\" and a hold of a dead process was "
     "recovered on the way (the read hold is taken).\n"
     "    RuntimeError: the calling thread holds the write hold (a read would wait "
     "forever).\n"
     "    ValueError: a timeout with block=False, or a negative or NaN timeout.\n\n"
     "If a process dies: the read holds of a dead process, and the write hold of a "
     "dead thread, are recovered by a waiter within a slice (0.1 s)."},
    {"release_read", (PyCFunction)RWLock_release_read, METH_NOARGS,
     "release_read($self, /)\n--\n\n"
     "Give back a read hold of this process.\n\n"
     "Raises:\n"
     "    RuntimeError: this process holds no read hold."},
    {"acquire_write", (PyCFunction)(void (*)(void))RWLock_acquire_write,
     METH_VARARGS | METH_KEYWORDS,
     "acquire_write($self, block=True, timeout=None)\n--\n\n"
     "Take the write hold (exclusive, owned by the calling thread); True if taken, "
     "False on timeout.\n\n"
     "Raises:\n"
     "    OwnerDiedError: on_owner_death=\"raise\" and the hold was recovered from a "
     "dead process (the write hold is taken).\n"
     "    RuntimeError: the calling thread already holds the write hold.\n"
     "    ValueError: a timeout with block=False, or a negative or NaN timeout.\n\n"
     "If a process dies: as for acquire_read(); whatever a dead writer was updating "
     "may be half done."},
    {"release_write", (PyCFunction)RWLock_release_write, METH_NOARGS,
     "release_write($self, /)\n--\n\n"
     "Give back the write hold.\n\n"
     "Raises:\n"
     "    RuntimeError: the calling thread does not hold the write hold."},
    {"_stats", (PyCFunction)RWLock_stats, METH_NOARGS, NULL},
    COMMON_METHODS,
    {NULL}};

SYNC_TYPE(RWLockType, "RWLock", RWLock_init, RWLock_methods, NULL,
          "RWLock(buffer, offset, create=False, nslots=64)\n\nA robust process-shared "
          "reader-writer lock (sync.h).  Used through interlock.RWLock.");

/* ================================================================ Event */

#define EV(self) ((il_event_t *)((SyncObject *)(self))->p)

static int Event_init(SyncObject *self, PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"buffer", "offset", "create", NULL};
    PyObject *buffer;
    Py_ssize_t offset;
    int create = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On|p:Event", kw, &buffer, &offset, &create))
        return -1;
    return sync_attach(self, buffer, offset, IL_SYNC_EVENT, create, 0);
}

static PyObject *Event_is_set(SyncObject *self, PyObject *unused)
{
    if (sync_check(self) < 0)
        return NULL;
    /* acquire: a True answer makes what the setter wrote before set() visible */
    return PyBool_FromLong(atomic_load_explicit(&EV(self)->flag, memory_order_acquire));
}

static PyObject *Event_set(SyncObject *self, PyObject *unused)
{
    if (sync_check(self) < 0)
        return NULL;
    il_event_t *e = EV(self);
    /* release: pairs with the waiters' acquire load of the flag */
    atomic_store_explicit(&e->flag, 1, memory_order_release);
    atomic_fetch_add_explicit(&e->sets, 1, memory_order_relaxed); /* statistics */
    il_ec_notify(&e->h.ec, INT32_MAX);
    Py_RETURN_NONE;
}

static PyObject *Event_clear(SyncObject *self, PyObject *unused)
{
    if (sync_check(self) < 0)
        return NULL;
    /* relaxed: clearing publishes nothing; waiters keep waiting */
    atomic_store_explicit(&EV(self)->flag, 0, memory_order_relaxed);
    Py_RETURN_NONE;
}

static PyObject *Event_wait(SyncObject *self, PyObject *args, PyObject *kwds)
{
    int64_t deadline = IL_FOREVER;
    if (sync_check(self) < 0)
        return NULL;
    if ((args && PyTuple_GET_SIZE(args)) || kwds) {
        PyObject *timeout = NULL;
        static char *kw[] = {"timeout", NULL};
        if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:wait", kw, &timeout))
            return NULL;
        if (timeout && timeout != Py_None) {
            double t = PyFloat_AsDouble(timeout);
            if (t == -1.0 && PyErr_Occurred())
                return NULL;
            deadline = t <= 0 ? 0 : il_deadline_after(t); /* threading: negative = 0 */
        }
    }
    il_event_t *e = EV(self);
    il_sync_head_t *h = &e->h;
    /* acquire: see is_set */
    if (atomic_load_explicit(&e->flag, memory_order_acquire))
        Py_RETURN_TRUE;
    if (deadline == 0)
        Py_RETURN_FALSE;
    atomic_fetch_add_explicit(&h->sleepers, 1, memory_order_relaxed); /* statistics */
    int result = 0;
    for (;;) {
        uint32_t key = il_ec_prepare(&h->ec);
        if (atomic_load_explicit(&e->flag, memory_order_acquire)) {
            il_ec_cancel(&h->ec);
            result = 1;
            break;
        }
        int64_t slice = IL_SYNC_SLICE_NS;
        if (deadline != IL_FOREVER) {
            int64_t left = deadline - il_now_ns();
            if (left <= 0) {
                il_ec_cancel(&h->ec);
                break;
            }
            if (left < slice)
                slice = left;
        }
        int sr = sync_sleep(self, h, key, slice);
        il_ec_cancel(&h->ec);
        if (sr == IL_INTR && PyErr_CheckSignals() < 0) {
            result = -1;
            break;
        }
    }
    atomic_fetch_sub_explicit(&h->sleepers, 1, memory_order_relaxed);
    if (result < 0)
        return NULL;
    if (!result)
        atomic_fetch_add_explicit(&h->timeouts, 1, memory_order_relaxed);
    return PyBool_FromLong(result);
}

static PyObject *Event_stats(SyncObject *self, PyObject *unused)
{
    PyObject *d = Sync_stats_common(self);
    if (!d)
        return NULL;
    PUT("flag", atomic_load_explicit(&EV(self)->flag, memory_order_relaxed));
    PUT("sets", atomic_load_explicit(&EV(self)->sets, memory_order_relaxed));
    return d;
}

static PyMethodDef Event_methods[] = {
    {"is_set", (PyCFunction)Event_is_set, METH_NOARGS,
     "is_set($self, /)\n--\n\nTrue if the flag is set."},
    {"set", (PyCFunction)Event_set, METH_NOARGS,
     "set($self, /)\n--\n\nSet the flag and wake every waiter, in every process."},
    {"clear", (PyCFunction)Event_clear, METH_NOARGS,
     "clear($self, /)\n--\n\nReset the flag."},
    {"wait", (PyCFunction)(void (*)(void))Event_wait, METH_VARARGS | METH_KEYWORDS,
     "wait($self, timeout=None)\n--\n\n"
     "Block until the flag is set (at most timeout seconds); return the flag: False "
     "on timeout.\n\n"
     "Raises:\n"
     "    ValueError: a negative or NaN timeout.\n\n"
     "If a process dies: an Event holds nothing, so nobody's death strands it; a "
     "waiter that dies leaves no trace for the others."},
    {"_stats", (PyCFunction)Event_stats, METH_NOARGS, NULL},
    COMMON_METHODS,
    {NULL}};

SYNC_TYPE(EventType, "Event", Event_init, Event_methods, NULL,
          "Event(buffer, offset, create=False)\n\nA process-shared event (sync.h).");

/* For aio.c (the type is static here). */
int il_py_is_event(PyObject *o) { return PyObject_TypeCheck(o, &EventType); }

/* ============================================================== Barrier */

#define BAR(self) ((il_barrier_t *)((SyncObject *)(self))->p)

static int Barrier_init(SyncObject *self, PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"buffer", "offset", "create", "parties", NULL};
    PyObject *buffer;
    Py_ssize_t offset;
    int create = 0;
    unsigned int parties = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On|pI:Barrier", kw, &buffer, &offset, &create,
                                     &parties))
        return -1;
    if (create && (parties < 1 || parties > IL_SYNC_MAX_SLOTS)) {
        PyErr_Format(PyExc_ValueError, "parties must be in 1..%d", IL_SYNC_MAX_SLOTS);
        return -1;
    }
    if (sync_attach(self, buffer, offset, IL_SYNC_BARRIER, create, parties) < 0)
        return -1;
    if (create)
        BAR(self)->parties = parties;
    return 0;
}

static il_sync_slot_t *slot_at(SyncObject *self, unsigned int i)
{
    if (i >= HEAD(self)->nslots) {
        PyErr_SetString(PyExc_ValueError, "bad slot index");
        return NULL;
    }
    return &il_sync_slots(HEAD(self))[i];
}

static PyObject *Barrier_arrive(SyncObject *self, PyObject *unused)
{
    if (sync_check(self) < 0)
        return NULL;
    uint32_t index = 0;
    il_sync_slot_t *slot = NULL;
    guard_lock(self);
    int r = il_barrier_arrive(BAR(self), &index, &slot);
    il_sync_guard_unlock(HEAD(self));
    if (r == IL_BROKEN) {
        PyErr_SetNone(BrokenBarrierError);
        return NULL;
    }
    if (r == IL_OVERFLOW) {
        PyErr_SetString(PyExc_RuntimeError, "barrier: no free waiter slot");
        return NULL;
    }
    return Py_BuildValue("(In)", index, (Py_ssize_t)(slot - BAR(self)->slots));
}

/* _pass(i) / _leave(i): the party in slot i passes / leaves, under the
 * guard, then every sleeper is woken to look. */
static PyObject *barrier_slot_op(SyncObject *self, PyObject *arg,
                                 void (*op)(il_barrier_t *, il_sync_slot_t *))
{
    if (sync_check(self) < 0)
        return NULL;
    unsigned long i = PyLong_AsUnsignedLong(arg);
    if (i == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    il_sync_slot_t *s = slot_at(self, (unsigned int)i);
    if (!s)
        return NULL;
    guard_lock(self);
    op(BAR(self), s);
    il_sync_guard_unlock(HEAD(self));
    il_ec_notify(&HEAD(self)->ec, INT32_MAX);
    Py_RETURN_NONE;
}

static PyObject *Barrier_pass(SyncObject *self, PyObject *arg)
{
    return barrier_slot_op(self, arg, il_barrier_pass);
}

static PyObject *Barrier_leave(SyncObject *self, PyObject *arg)
{
    return barrier_slot_op(self, arg, il_barrier_leave);
}

static PyObject *Barrier_abort(SyncObject *self, PyObject *unused)
{
    if (sync_check(self) < 0)
        return NULL;
    guard_lock(self);
    il_barrier_break(BAR(self));
    il_sync_guard_unlock(HEAD(self));
    il_ec_notify(&HEAD(self)->ec, INT32_MAX);
    Py_RETURN_NONE;
}

static PyObject *Barrier_reset(SyncObject *self, PyObject *unused)
{
    if (sync_check(self) < 0)
        return NULL;
    guard_lock(self);
    il_barrier_reset(BAR(self));
    il_sync_guard_unlock(HEAD(self));
    il_ec_notify(&HEAD(self)->ec, INT32_MAX);
    Py_RETURN_NONE;
}

static int bar_step(SyncObject *self, int may_wait, uint32_t *key, uint32_t *dead, void *arg)
{
    int r = il_barrier_check(BAR(self), (il_sync_slot_t *)arg, key);
    if (r == IL_WAIT && !may_wait) {
        il_ec_cancel(&HEAD(self)->ec);
        return IL_TIMEDOUT;
    }
    return r;
}

static void bar_cancel(SyncObject *self, void *arg)
{
    il_barrier_leave(BAR(self), (il_sync_slot_t *)arg);
}

/* _wait(slot, timeout): True when passed; raises BrokenBarrierError when
 * broken, reset, or on timeout (which breaks the barrier, as threading). */
static PyObject *Barrier_wait_slot(SyncObject *self, PyObject *args)
{
    unsigned int i;
    PyObject *timeout = Py_None;
    if (sync_check(self) < 0 || !PyArg_ParseTuple(args, "I|O:_wait", &i, &timeout))
        return NULL;
    il_sync_slot_t *s = slot_at(self, i);
    if (!s)
        return NULL;
    int64_t deadline;
    if (get_deadline(NULL, timeout, &deadline) < 0)
        return NULL;
    if (deadline == 0)
        deadline = il_now_ns(); /* timeout 0: one check, then break */
    uint32_t dead = 0;
    int r = wait_loop(self, bar_step, bar_cancel, s, deadline, &dead);
    if (r < 0)
        return NULL;
    if (r == IL_TIMEDOUT || r == IL_BROKEN) {
        il_ec_notify(&HEAD(self)->ec, INT32_MAX);
        PyErr_SetNone(BrokenBarrierError);
        return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *Barrier_get_parties(SyncObject *self, void *unused)
{
    if (sync_check(self) < 0)
        return NULL;
    return PyLong_FromUnsignedLong(BAR(self)->parties);
}

static PyObject *Barrier_get_n_waiting(SyncObject *self, void *unused)
{
    if (sync_check(self) < 0)
        return NULL;
    il_barrier_t *b = BAR(self);
    /* relaxed: snapshot */
    if (atomic_load_explicit(&b->broken, memory_order_relaxed))
        return PyLong_FromLong(0);
    uint32_t c = atomic_load_explicit(&b->count, memory_order_relaxed);
    return PyLong_FromUnsignedLong(c >= b->parties ? 0 : c);
}

static PyObject *Barrier_get_broken(SyncObject *self, void *unused)
{
    if (sync_check(self) < 0)
        return NULL;
    /* relaxed: snapshot */
    return PyBool_FromLong(atomic_load_explicit(&BAR(self)->broken, memory_order_relaxed));
}

static PyObject *Barrier_stats(SyncObject *self, PyObject *unused)
{
    PyObject *d = Sync_stats_common(self);
    if (!d)
        return NULL;
    il_barrier_t *b = BAR(self);
    PUT("parties", b->parties);
    PUT("count", atomic_load_explicit(&b->count, memory_order_relaxed));
    PUT("generation", atomic_load_explicit(&b->gen, memory_order_relaxed));
    PUT("broken", atomic_load_explicit(&b->broken, memory_order_relaxed));
    PUT("passes", atomic_load_explicit(&b->passes, memory_order_relaxed));
    PUT("dead_pid", atomic_load_explicit(&b->h.dead_pid, memory_order_relaxed));
    return d;
}

static PyMethodDef Barrier_methods[] = {
    {"_arrive", (PyCFunction)Barrier_arrive, METH_NOARGS, NULL},
    {"_pass", (PyCFunction)Barrier_pass, METH_O, NULL},
    {"_wait", (PyCFunction)Barrier_wait_slot, METH_VARARGS, NULL},
    {"_leave", (PyCFunction)Barrier_leave, METH_O, NULL},
    {"abort", (PyCFunction)Barrier_abort, METH_NOARGS,
     "abort($self, /)\n--\n\n"
     "Put the barrier in the broken state: current and future waiters get "
     "BrokenBarrierError until reset()."},
    {"reset", (PyCFunction)Barrier_reset, METH_NOARGS,
     "reset($self, /)\n--\n\n"
     "Return the barrier to the empty state; current waiters get "
     "BrokenBarrierError."},
    {"_stats", (PyCFunction)Barrier_stats, METH_NOARGS, NULL},
    COMMON_METHODS,
    {NULL}};

static PyGetSetDef Barrier_getset[] = {
    {"parties", (getter)Barrier_get_parties, NULL, "Parties needed to pass.", NULL},
    {"n_waiting", (getter)Barrier_get_n_waiting, NULL, "Parties waiting now.", NULL},
    {"broken", (getter)Barrier_get_broken, NULL, "True if the barrier is broken.", NULL},
    {NULL}};

SYNC_TYPE(BarrierType, "Barrier", Barrier_init, Barrier_methods, Barrier_getset,
          "Barrier(buffer, offset, create=False, parties=1)\n\nA robust process-shared "
          "barrier (sync.h).  Used through interlock.Barrier.");

/* ============================================================ Condition */

#define COND(self) ((il_condition_t *)((SyncObject *)(self))->p)

static int Condition_init(SyncObject *self, PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"buffer", "offset", "create", "lock_name", "lock_recursive", "nslots",
                         NULL};
    PyObject *buffer;
    Py_ssize_t offset;
    int create = 0, rec = 1;
    const char *lock_name = "";
    Py_ssize_t nlen = 0;
    unsigned int nslots = 128;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On|ps#pI:Condition", kw, &buffer, &offset,
                                     &create, &lock_name, &nlen, &rec, &nslots))
        return -1;
    if (nlen >= 256) {
        PyErr_SetString(PyExc_ValueError, "lock name too long");
        return -1;
    }
    if (sync_attach(self, buffer, offset, IL_SYNC_CONDITION, create, nslots) < 0)
        return -1;
    if (create) {
        memcpy(COND(self)->lock_name, lock_name, (size_t)nlen);
        COND(self)->lock_name[nlen] = 0;
        COND(self)->lock_recursive = (uint32_t)rec;
    }
    return 0;
}

static PyObject *Condition_enter_slot(SyncObject *self, PyObject *unused)
{
    if (sync_check(self) < 0)
        return NULL;
    guard_lock(self);
    il_sync_slot_t *s = il_cond_enter(COND(self));
    il_sync_guard_unlock(HEAD(self));
    if (!s) {
        /* every slot taken: perhaps by the dead */
        maybe_sweep(self, 1);
        guard_lock(self);
        s = il_cond_enter(COND(self));
        il_sync_guard_unlock(HEAD(self));
        if (!s) {
            PyErr_Format(PyExc_RuntimeError, "too many waiters on this Condition (%u)",
                         HEAD(self)->nslots);
            return NULL;
        }
    }
    return PyLong_FromSsize_t(s - COND(self)->slots);
}

static int cond_step(SyncObject *self, int may_wait, uint32_t *key, uint32_t *dead, void *arg)
{
    int r = il_cond_check(COND(self), (il_sync_slot_t *)arg, key);
    if (r == IL_WAIT && !may_wait) {
        il_ec_cancel(&HEAD(self)->ec);
        return IL_TIMEDOUT;
    }
    return r;
}

/* _sleep(slot, timeout): True once notified, False when the timeout passed
 * first (the slot stays registered: call _leave). */
static PyObject *Condition_sleep(SyncObject *self, PyObject *args)
{
    unsigned int i;
    double t;
    if (sync_check(self) < 0 || !PyArg_ParseTuple(args, "Id:_sleep", &i, &t))
        return NULL;
    il_sync_slot_t *s = slot_at(self, i);
    if (!s)
        return NULL;
    int64_t deadline = t <= 0 ? 0 : il_deadline_after(t);
    uint32_t dead;
    int r = wait_loop(self, cond_step, NULL, s, deadline, &dead);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r == IL_OK);
}

static PyObject *Condition_leave(SyncObject *self, PyObject *arg)
{
    if (sync_check(self) < 0)
        return NULL;
    unsigned long i = PyLong_AsUnsignedLong(arg);
    if (i == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    il_sync_slot_t *s = slot_at(self, (unsigned int)i);
    if (!s)
        return NULL;
    guard_lock(self);
    int was = il_cond_leave(COND(self), s);
    il_sync_guard_unlock(HEAD(self));
    return PyBool_FromLong(was);
}

static PyObject *Condition_notify_n(SyncObject *self, PyObject *arg)
{
    if (sync_check(self) < 0)
        return NULL;
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n <= 0)
        return PyLong_FromLong(0);
    guard_lock(self);
    uint32_t done = il_cond_notify(COND(self), n > UINT32_MAX ? UINT32_MAX : (uint32_t)n);
    il_sync_guard_unlock(HEAD(self));
    if (done)
        il_ec_notify(&HEAD(self)->ec, INT32_MAX);
    return PyLong_FromUnsignedLong(done);
}

static PyObject *Condition_get_lock_name(SyncObject *self, void *unused)
{
    if (sync_check(self) < 0)
        return NULL;
    il_condition_t *c = COND(self);
    return Py_BuildValue("(sO)", c->lock_name, c->lock_recursive ? Py_True : Py_False);
}

static PyObject *Condition_stats(SyncObject *self, PyObject *unused)
{
    PyObject *d = Sync_stats_common(self);
    if (!d)
        return NULL;
    PUT("notifies", atomic_load_explicit(&COND(self)->notifies, memory_order_relaxed));
    PUT("tickets", atomic_load_explicit(&COND(self)->ticket, memory_order_relaxed));
    return d;
}

static PyMethodDef Condition_methods[] = {
    {"_enter", (PyCFunction)Condition_enter_slot, METH_NOARGS, NULL},
    {"_sleep", (PyCFunction)Condition_sleep, METH_VARARGS, NULL},
    {"_leave", (PyCFunction)Condition_leave, METH_O, NULL},
    {"_notify", (PyCFunction)Condition_notify_n, METH_O, NULL},
    {"_stats", (PyCFunction)Condition_stats, METH_NOARGS, NULL},
    COMMON_METHODS,
    {NULL}};

static PyGetSetDef Condition_getset[] = {
    {"_lock_info", (getter)Condition_get_lock_name, NULL, NULL, NULL}, {NULL}};

SYNC_TYPE(ConditionType, "Condition", Condition_init, Condition_methods, Condition_getset,
          "Condition(buffer, offset, create=False, lock_name='', lock_recursive=True, "
          "nslots=128)\n\nThe waiter table of a process-shared condition variable (sync.h).");

/* =============================================================== module */

static PyObject *mod_sync_size(PyObject *m, PyObject *args)
{
    int kind;
    unsigned int nslots;
    if (!PyArg_ParseTuple(args, "iI:sync_size", &kind, &nslots))
        return NULL;
    size_t n = il_sync_size(kind, nslots);
    if (!n || nslots > IL_SYNC_MAX_SLOTS) {
        PyErr_SetString(PyExc_ValueError, "bad kind or slot count");
        return NULL;
    }
    return PyLong_FromSize_t(n);
}

static PyMethodDef sync_functions[] = {
    {"sync_size", mod_sync_size, METH_VARARGS,
     "sync_size(kind, nslots): bytes a sync object of this kind needs."},
    {NULL}};

int il_sync_register(PyObject *module)
{
    PyObject *threading = PyImport_ImportModule("threading");
    if (!threading)
        return -1;
    BrokenBarrierError = PyObject_GetAttrString(threading, "BrokenBarrierError");
    Py_DECREF(threading);
    if (!BrokenBarrierError)
        return -1;
    str_on_owner_died = PyUnicode_InternFromString("_on_owner_died");
    if (!str_on_owner_died)
        return -1;
    struct {
        PyTypeObject *t;
        const char *name;
    } types[] = {{&SemaphoreType, "Semaphore"}, {&RWLockType, "RWLock"}, {&EventType, "Event"},
                 {&BarrierType, "Barrier"}, {&ConditionType, "Condition"}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (PyType_Ready(types[i].t) < 0)
            return -1;
        Py_INCREF(types[i].t);
        if (PyModule_AddObject(module, types[i].name, (PyObject *)types[i].t) < 0) {
            Py_DECREF(types[i].t);
            return -1;
        }
    }
    for (PyMethodDef *f = sync_functions; f->ml_name; f++) {
        PyObject *fn = PyCFunction_New(f, NULL);
        if (!fn || PyModule_AddObject(module, f->ml_name, fn) < 0) {
            Py_XDECREF(fn);
            return -1;
        }
    }
    if (PyModule_AddIntConstant(module, "SYNC_SEMAPHORE", IL_SYNC_SEMAPHORE) < 0 ||
        PyModule_AddIntConstant(module, "SYNC_RWLOCK", IL_SYNC_RWLOCK) < 0 ||
        PyModule_AddIntConstant(module, "SYNC_EVENT", IL_SYNC_EVENT) < 0 ||
        PyModule_AddIntConstant(module, "SYNC_BARRIER", IL_SYNC_BARRIER) < 0 ||
        PyModule_AddIntConstant(module, "SYNC_CONDITION", IL_SYNC_CONDITION) < 0 ||
        PyModule_AddIntConstant(module, "SYNC_SLICE_NS", (long)IL_SYNC_SLICE_NS) < 0)
        return -1;
    return 0;
}
