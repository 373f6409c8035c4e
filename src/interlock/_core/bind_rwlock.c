/* bind_rwlock.c -- the Python type RWLock over il_rwlock_t (sync.h).  Timeouts:
 * threading.Lock's rules (binding.h, IL_TO_LOCK). */
#include "bind_sync.h"

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
    if (r == IL_OWNER_DIED && il_report_owner_died((PyObject *)self, dead) < 0)
        return NULL; /* held, like Lock's "raise" mode */
    Py_RETURN_TRUE;
}

static PyObject *RWLock_acquire_read(SyncObject *self, PyObject *args, PyObject *kwds)
{
    int64_t deadline = IL_FOREVER;
    if (shm_check(self) < 0 || parse_block_timeout(IL_TO_LOCK, args, kwds, &deadline) < 0)
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
    if (shm_check(self) < 0)
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
    if (shm_check(self) < 0 || parse_block_timeout(IL_TO_LOCK, args, kwds, &deadline) < 0)
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
    if (shm_check(self) < 0)
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
    IL_PUT("readers", atomic_load_explicit(&l->readers, memory_order_relaxed));
    IL_PUT("writer_tid", atomic_load_explicit(&l->writer_tid, memory_order_relaxed));
    IL_PUT("writer_pid", atomic_load_explicit(&l->writer_pid, memory_order_relaxed));
    IL_PUT("writers_waiting", atomic_load_explicit(&l->writers_waiting, memory_order_relaxed));
    IL_PUT("write_acquisitions", atomic_load_explicit(&l->write_acquisitions, memory_order_relaxed));
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

IL_SHM_TYPE(il_RWLockType, "RWLock", sizeof(SyncObject), RWLock_init, RWLock_methods, NULL, NULL,
          "RWLock(buffer, offset, create=False, nslots=64)\n\nA robust process-shared "
          "reader-writer lock (sync.h).  Used through interlock.RWLock.");

