/* bind_sync.c -- the plumbing of the sync family's bindings (bind_sync.h). */
#include "bind_sync.h"

/* ------------------------------------------------------------- plumbing */

int sync_attach(SyncObject *self, PyObject *buffer, Py_ssize_t offset, int kind, int create,
                uint32_t nslots)
{
    size_t have;
    il_sync_head_t *h = shm_attach_view(self, buffer, offset, 0, &have);
    if (!h)
        return -1;
    if (!create && have >= sizeof(il_sync_head_t))
        nslots = h->nslots; /* attach: the segment says how big it is */
    size_t need = il_sync_size(kind, nslots);
    if (nslots > IL_SYNC_MAX_SLOTS || need > have || (!create && (h->kind != kind))) {
        shm_release_view(self);
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
    self->yield_ns = IL_YIELD_MAX_NS;
    return 0;
}

/* Take the guard: one CAS with the GIL; the GIL is released only if another
 * task holds it. */
void guard_lock(SyncObject *self)
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
int maybe_sweep(SyncObject *self, int force)
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

int parse_block_timeout(int rule, PyObject *args, PyObject *kwds, int64_t *deadline)
{
    static char *kw[] = {"block", "timeout", NULL};
    PyObject *block = NULL, *timeout = NULL;
    if ((!args || PyTuple_GET_SIZE(args) == 0) && (!kwds || PyDict_GET_SIZE(kwds) == 0)) {
        *deadline = IL_FOREVER; /* the common call, without the parser's cost */
        return 0;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO", kw, &block, &timeout))
        return -1;
    return il_parse_timeout(rule, block, timeout, deadline);
}

/* Wait (GIL released) until the eventcount moves past `key` or `slice` ns
 * pass: an adaptive spin first (binding.h: a notifier on another CPU bumps
 * seq within microseconds), or where spinning does not pay an adaptive
 * sched_yield() phase (binding.h: the notifier may share our CPU), then
 * FUTEX_WAIT.  Returns il_ec_sleep's result
 * (IL_OK when the spin saw the bump). */
static int seq_moved(void *seq, uint64_t key)
{
    /* acquire: as il_ec_prepare's load of seq */
    return atomic_load_explicit((_Atomic uint32_t *)seq, memory_order_acquire) != (uint32_t)key;
}

int sync_sleep(SyncObject *self, il_sync_head_t *h, uint32_t key, int64_t slice)
{
    int sr = IL_OK, spun = 0, yielded = 0;
    int budget = il_spin_budget(self);
    int ybudget = il_yield_budget(self, budget); /* (binding.h: where spinning does not pay) */
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    spun = il_spin_until(budget, seq_moved, &h->ec.seq, key);
    if (!spun)
        yielded = il_yield_until(ybudget, seq_moved, &h->ec.seq, key);
    if (!spun && !yielded) {
        sr = il_ec_sleep(&h->ec, key, slice);
        if (sr == IL_TIMEDOUT) /* a whole slice with no wake: uncount dead waiters */
            il_ec_repair(&h->ec);
    }
    Py_END_ALLOW_THREADS
    self->busy--;
    il_spin_adapt(self, budget, spun);
    il_yield_adapt(self, ybudget, yielded);
    return sr;
}

/* The wait loop shared by every blocking operation.  `step` runs under the
 * guard and returns IL_OK/IL_OWNER_DIED/..., or IL_WAIT with *key prepared.
 * Returns the final step result, IL_TIMEDOUT, or -1 with an exception (a
 * signal handler raised: `cancel` (may be NULL) is run under the guard). */

int wait_loop(SyncObject *self, step_fn step, cancel_fn cancel, void *arg, int64_t deadline,
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

static PyObject *head_stats(il_sync_head_t *h, PyObject *d)
{
    /* relaxed: a racy snapshot for display */
    IL_PUT("acquisitions", atomic_load_explicit(&h->acquisitions, memory_order_relaxed));
    IL_PUT("contentions", atomic_load_explicit(&h->contentions, memory_order_relaxed));
    IL_PUT("timeouts", atomic_load_explicit(&h->timeouts, memory_order_relaxed));
    IL_PUT("owner_deaths", atomic_load_explicit(&h->owner_deaths, memory_order_relaxed));
    IL_PUT("waiters", atomic_load_explicit(&h->sleepers, memory_order_relaxed));
    IL_PUT("recovered", atomic_load_explicit(&h->recovered, memory_order_relaxed));
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

PyObject *Sync_stats_common(SyncObject *self)
{
    if (shm_check(self) < 0)
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

PyObject *Sync_sweep(SyncObject *self, PyObject *unused)
{
    if (shm_check(self) < 0)
        return NULL;
    return PyLong_FromLong(maybe_sweep(self, 1));
}



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
    if (il_add_functions(module, sync_functions) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "SYNC_SEMAPHORE", IL_SYNC_SEMAPHORE) < 0 ||
        PyModule_AddIntConstant(module, "SYNC_RWLOCK", IL_SYNC_RWLOCK) < 0 ||
        PyModule_AddIntConstant(module, "SYNC_EVENT", IL_SYNC_EVENT) < 0 ||
        PyModule_AddIntConstant(module, "SYNC_BARRIER", IL_SYNC_BARRIER) < 0 ||
        PyModule_AddIntConstant(module, "SYNC_CONDITION", IL_SYNC_CONDITION) < 0 ||
        PyModule_AddIntConstant(module, "SYNC_SLICE_NS", (long)IL_SYNC_SLICE_NS) < 0)
        return -1;
    return 0;
}

il_sync_slot_t *slot_at(SyncObject *self, unsigned int i)
{
    if (i >= HEAD(self)->nslots) {
        PyErr_SetString(PyExc_ValueError, "bad slot index");
        return NULL;
    }
    return &il_sync_slots(HEAD(self))[i];
}

il_sync_slot_t *slot_arg(SyncObject *self, PyObject *arg)
{
    if (shm_check(self) < 0)
        return NULL;
    unsigned long i = PyLong_AsUnsignedLong(arg);
    if (i == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    return slot_at(self, i > UINT32_MAX ? UINT32_MAX : (unsigned int)i);
}
