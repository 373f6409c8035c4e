/* bind_semaphore.c -- the Python type Semaphore over il_sem_t (sync.h); interlock.Semaphore
 * and BoundedSemaphore subclass it.  Timeouts: multiprocessing's rules
 * (binding.h, IL_TO_SEM). */
#include "bind_sync.h"

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
    if (shm_check(self) < 0)
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
    if (r == IL_OWNER_DIED && il_report_owner_died((PyObject *)self, dead) < 0) {
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
        if (parse_block_timeout(IL_TO_SEM, args, kwds, &deadline) < 0)
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
    if (shm_check(self) < 0)
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
    if (shm_check(self) < 0)
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
    IL_PUT("value", atomic_load_explicit(&s->value, memory_order_relaxed));
    IL_PUT("maxvalue", s->maxvalue);
    IL_PUT("untracked", atomic_load_explicit(&s->untracked, memory_order_relaxed));
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
     "    ValueError: a NaN timeout (with block=False the timeout is ignored, and a "
     "negative one times out at once, as multiprocessing).\n\n"
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

IL_SHM_TYPE(il_SemaphoreType, "Semaphore", sizeof(SyncObject), Semaphore_init, Semaphore_methods, NULL, NULL,
          "Semaphore(buffer, offset, create=False, value=1, maxvalue=2**32-1, nslots=64)\n\n"
          "A robust process-shared semaphore (sync.h).  Used through interlock.Semaphore.");

