/* bind_event.c -- the Python type Event over il_event_t (sync.h).  Timeouts:
 * threading.Event.wait's rules (binding.h, IL_TO_WAIT). */
#include "bind_sync.h"

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
    if (shm_check(self) < 0)
        return NULL;
    /* acquire: a True answer makes what the setter wrote before set() visible */
    return PyBool_FromLong(atomic_load_explicit(&EV(self)->state, memory_order_acquire) &
                           IL_EVENT_FLAG);
}

static PyObject *Event_set(SyncObject *self, PyObject *unused)
{
    if (shm_check(self) < 0)
        return NULL;
    il_event_t *e = EV(self);
    /* Flag and generation in one CAS (sync.h): killed before it, nothing
     * happened; after it, the event is set and every waiter's next check
     * (at the latest when its 100 ms slice ends) returns True. */
    il_event_set(e);
    IL_CRASH(EVENT_SET_STORED);
    il_ec_notify(&e->h.ec, INT32_MAX);
    Py_RETURN_NONE;
}

static PyObject *Event_clear(SyncObject *self, PyObject *unused)
{
    if (shm_check(self) < 0)
        return NULL;
    il_event_clear(EV(self));
    Py_RETURN_NONE;
}

static PyObject *Event_generation(SyncObject *self, PyObject *unused)
{
    if (shm_check(self) < 0)
        return NULL;
    /* acquire: as is_set (the async waiter reads its starting generation) */
    return PyLong_FromUnsignedLong(
        il_event_gen(atomic_load_explicit(&EV(self)->state, memory_order_acquire)));
}

static PyObject *Event_wait(SyncObject *self, PyObject *args, PyObject *kwds)
{
    int64_t deadline = IL_FOREVER;
    if (shm_check(self) < 0)
        return NULL;
    if ((args && PyTuple_GET_SIZE(args)) || kwds) {
        PyObject *timeout = NULL;
        static char *kw[] = {"timeout", NULL};
        if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:wait", kw, &timeout))
            return NULL;
        if (il_parse_timeout(IL_TO_WAIT, NULL, timeout, &deadline) < 0)
            return NULL;
    }
    il_event_t *e = EV(self);
    il_sync_head_t *h = &e->h;
    /* acquire: see is_set.  g0: the generation when this wait began; a set()
     * after it moves the generation, and a clear() cannot move it back, so
     * a set-then-clear that happens while we sleep still returns True. */
    uint64_t st = atomic_load_explicit(&e->state, memory_order_acquire);
    if (st & IL_EVENT_FLAG)
        Py_RETURN_TRUE;
    uint32_t g0 = il_event_gen(st);
    if (deadline == 0)
        Py_RETURN_FALSE;
    atomic_fetch_add_explicit(&h->sleepers, 1, memory_order_relaxed); /* statistics */
    int result = 0;
    for (;;) {
        uint32_t key = il_ec_prepare(&h->ec);
        /* acquire: see is_set; read after il_ec_prepare's fence (eventcount.h) */
        if (il_event_done(atomic_load_explicit(&e->state, memory_order_acquire), g0)) {
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
    /* relaxed: a snapshot for display */
    uint64_t st = atomic_load_explicit(&EV(self)->state, memory_order_relaxed);
    IL_PUT("flag", st & IL_EVENT_FLAG);
    IL_PUT("sets", il_event_gen(st));
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
     "Block until the flag is set (at most timeout seconds); return True, or False "
     "on timeout.  As threading.Event: a wait that was waiting when set() was called "
     "returns True even if clear() followed at once.\n\n"
     "Raises:\n"
     "    ValueError: a NaN timeout (a negative one times out at once, as threading).\n\n"
     "If a process dies: an Event holds nothing, so nobody's death strands it; a "
     "waiter that dies leaves no trace for the others."},
    {"_generation", (PyCFunction)Event_generation, METH_NOARGS,
     "_generation($self, /)\n--\n\nHow many times set() was called (mod 2**32): a waiter "
     "that began at generation g returns True once it moved (wait_async)."},
    {"_stats", (PyCFunction)Event_stats, METH_NOARGS, NULL},
    COMMON_METHODS,
    {NULL}};

IL_SHM_TYPE(il_EventType, "Event", sizeof(SyncObject), Event_init, Event_methods, NULL, NULL,
          "Event(buffer, offset, create=False)\n\nA process-shared event (sync.h).");


