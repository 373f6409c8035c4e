/* bind_condition.c -- the Python type Condition: the waiter table of a process-shared
 * condition variable (sync.h); the user's lock is a Mutex of its own, and
 * interlock.Condition (_sync.py) holds the wait loop. */
#include "bind_sync.h"

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
    if (shm_check(self) < 0)
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
    if (shm_check(self) < 0 || !PyArg_ParseTuple(args, "Id:_sleep", &i, &t))
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
    il_sync_slot_t *s = slot_arg(self, arg);
    if (!s)
        return NULL;
    guard_lock(self);
    int was = il_cond_leave(COND(self), s);
    il_sync_guard_unlock(HEAD(self));
    return PyBool_FromLong(was);
}

static PyObject *Condition_notify_n(SyncObject *self, PyObject *arg)
{
    if (shm_check(self) < 0)
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
    if (shm_check(self) < 0)
        return NULL;
    il_condition_t *c = COND(self);
    return Py_BuildValue("(sO)", c->lock_name, c->lock_recursive ? Py_True : Py_False);
}

static PyObject *Condition_stats(SyncObject *self, PyObject *unused)
{
    PyObject *d = Sync_stats_common(self);
    if (!d)
        return NULL;
    IL_PUT("notifies", atomic_load_explicit(&COND(self)->notifies, memory_order_relaxed));
    IL_PUT("tickets", atomic_load_explicit(&COND(self)->ticket, memory_order_relaxed));
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

IL_SHM_TYPE(il_ConditionType, "Condition", sizeof(SyncObject), Condition_init, Condition_methods, NULL, Condition_getset,
          "Condition(buffer, offset, create=False, lock_name='', lock_recursive=True, "
          "nslots=128)\n\nThe waiter table of a process-shared condition variable (sync.h).");

