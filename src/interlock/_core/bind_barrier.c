/* bind_barrier.c -- the Python type Barrier over il_barrier_t (sync.h); interlock.Barrier
 * (_sync.py) runs the action and checks the timeout before arriving. */
#include "bind_sync.h"

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

static PyObject *Barrier_arrive(SyncObject *self, PyObject *unused)
{
    if (shm_check(self) < 0)
        return NULL;
    uint32_t index = 0;
    il_sync_slot_t *slot = NULL;
    guard_lock(self);
    int r = il_barrier_arrive(BAR(self), &index, &slot);
    il_sync_guard_unlock(HEAD(self));
    if (r == IL_BROKEN) {
        PyErr_SetNone(il_BrokenBarrierError);
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
    il_sync_slot_t *s = slot_arg(self, arg);
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
    if (shm_check(self) < 0)
        return NULL;
    guard_lock(self);
    il_barrier_break(BAR(self));
    il_sync_guard_unlock(HEAD(self));
    il_ec_notify(&HEAD(self)->ec, INT32_MAX);
    Py_RETURN_NONE;
}

static PyObject *Barrier_reset(SyncObject *self, PyObject *unused)
{
    if (shm_check(self) < 0)
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
    if (shm_check(self) < 0 || !PyArg_ParseTuple(args, "I|O:_wait", &i, &timeout))
        return NULL;
    il_sync_slot_t *s = slot_at(self, i);
    if (!s)
        return NULL;
    int64_t deadline;
    if (il_parse_timeout(IL_TO_WAIT, NULL, timeout, &deadline) < 0)
        return NULL;
    if (deadline == 0)
        deadline = il_now_ns(); /* timeout 0: one check, then break */
    uint32_t dead = 0;
    int r = wait_loop(self, bar_step, bar_cancel, s, deadline, &dead);
    if (r < 0)
        return NULL;
    if (r == IL_TIMEDOUT || r == IL_BROKEN) {
        il_ec_notify(&HEAD(self)->ec, INT32_MAX);
        PyErr_SetNone(il_BrokenBarrierError);
        return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *Barrier_get_parties(SyncObject *self, void *unused)
{
    if (shm_check(self) < 0)
        return NULL;
    return PyLong_FromUnsignedLong(BAR(self)->parties);
}

static PyObject *Barrier_get_n_waiting(SyncObject *self, void *unused)
{
    if (shm_check(self) < 0)
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
    if (shm_check(self) < 0)
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
    IL_PUT("parties", b->parties);
    IL_PUT("count", atomic_load_explicit(&b->count, memory_order_relaxed));
    IL_PUT("generation", atomic_load_explicit(&b->gen, memory_order_relaxed));
    IL_PUT("broken", atomic_load_explicit(&b->broken, memory_order_relaxed));
    IL_PUT("passes", atomic_load_explicit(&b->passes, memory_order_relaxed));
    IL_PUT("dead_pid", atomic_load_explicit(&b->h.dead_pid, memory_order_relaxed));
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

IL_SHM_TYPE(il_BarrierType, "Barrier", sizeof(SyncObject), Barrier_init, Barrier_methods, NULL, Barrier_getset,
          "Barrier(buffer, offset, create=False, parties=1)\n\nA robust process-shared "
          "barrier (sync.h).  Used through interlock.Barrier.");

