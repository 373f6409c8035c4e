/* binding.c -- the shared binding layer (what each fact is: binding.h). */
#include "binding.h"

#include <sched.h>

#include <math.h>

PyObject *il_Empty, *il_Full, *il_QueueClosed, *il_DeadlockError, *il_BrokenBarrierError;
static PyObject *str_on_owner_died, *str_adopt;
/* threading.TIMEOUT_MAX (_thread's, read at import: it depends on the
 * Python version and platform): IL_TO_LOCK refuses a longer timeout with
 * OverflowError, as threading.Lock.acquire does. */
static double lock_timeout_max = 9223372036.0;

/* ------------------------------------------------------------ the object */

void *shm_attach_view(ShmObject *self, PyObject *buffer, Py_ssize_t offset, size_t need,
                      size_t *have)
{
    if (self->p) {
        PyErr_SetString(PyExc_RuntimeError, "object is already initialised");
        return NULL;
    }
    if (PyObject_GetBuffer(buffer, &self->view, PyBUF_WRITABLE) < 0)
        return NULL;
    if (offset < 0 || offset % IL_CACHELINE != 0 || offset > self->view.len ||
        need > (size_t)self->view.len - (size_t)offset) {
        PyErr_Format(PyExc_ValueError,
                     "segment too small or misaligned: need %zu bytes at offset %zd, have %zd",
                     need, offset, self->view.len);
        PyBuffer_Release(&self->view);
        return NULL;
    }
    *have = (size_t)self->view.len - (size_t)offset;
    return (char *)self->view.buf + offset;
}

int shm_attach(ShmObject *self, PyObject *buffer, Py_ssize_t offset, size_t need)
{
    size_t have;
    void *p = shm_attach_view(self, buffer, offset, need, &have);
    if (!p)
        return -1;
    self->p = p;
    self->spin_ns = IL_SPIN_MAX_NS;
    self->yield_ns = IL_YIELD_MAX_NS;
    self->hint = UINT32_MAX;
    self->pid = il_self_pid(); /* made here, after this process claimed its slot */
    return 0;
}

void shm_release_view(ShmObject *self) { PyBuffer_Release(&self->view); }

int shm_adopt(ShmObject *self)
{
    uint32_t mine = il_self_pid();
    self->pid = mine; /* first: _adopt may use the object (and re-enter) */
    self->roles = 0;  /* the child's slot has none yet */
    PyObject *fn = PyObject_GetAttr((PyObject *)self, str_adopt);
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

PyObject *shm_detach(ShmObject *self, PyObject *unused)
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

void shm_dealloc(ShmObject *self)
{
    PyObject_GC_UnTrack(self);
    if (self->p) {
        self->p = NULL;
        PyBuffer_Release(&self->view);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

int shm_traverse(ShmObject *self, visitproc visit, void *arg)
{
    if (self->p)
        Py_VISIT(self->view.obj);
    return 0;
}

/* ------------------------------------------------------------ arguments */

int il_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                  const char *const *names, int nnames, int required, PyObject **out)
{
    for (int i = 0; i < nnames; i++)
        out[i] = NULL;
    if (nargs > nnames) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", fname,
                     nnames, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        out[i] = args[i];
    if (kwnames) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t k = 0; k < nkw; k++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, k);
            int found = 0;
            for (int i = 0; i < nnames; i++) {
                if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) {
                    if (out[i]) {
                        PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'",
                                     fname, names[i]);
                        return -1;
                    }
                    out[i] = args[nargs + k];
                    found = 1;
                    break;
                }
            }
            if (!found) {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'",
                             fname, key);
                return -1;
            }
        }
    }
    for (int i = 0; i < required; i++) {
        if (!out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
            return -1;
        }
    }
    return 0;
}

int il_parse_timeout(int rule, PyObject *block, PyObject *timeout, int64_t *deadline)
{
    int b = 1;
    if (block && (b = PyObject_IsTrue(block)) < 0)
        return -1;
    if (!b && rule == IL_TO_QUEUE) { /* queue.Queue never looks at it */
        *deadline = 0;
        return 0;
    }
    int has_t = timeout && timeout != Py_None;
    double t = 0;
    if (has_t) {
        if (!PyNumber_Check(timeout)) {
            PyErr_Format(PyExc_TypeError, "'timeout' must be a number or None, not %.100s",
                         Py_TYPE(timeout)->tp_name);
            return -1;
        }
        t = PyFloat_AsDouble(timeout);
        if (t == -1.0 && PyErr_Occurred())
            return -1;
        if (isnan(t)) {
            PyErr_SetString(PyExc_ValueError, "'timeout' must be a non-negative number, not NaN");
            return -1;
        }
    }
    if (rule == IL_TO_LOCK && has_t && t > lock_timeout_max) {
        /* +inf included; before the block=False check, as threading's
         * acquire(False, inf) converts (and overflows) first */
        PyErr_SetString(PyExc_OverflowError, "timeout value is too large");
        return -1;
    }
    if (rule == IL_TO_LOCK && has_t && t == -1.0)
        has_t = 0; /* threading's "no timeout" */
    if (!b) {
        if (rule == IL_TO_LOCK && has_t) {
            PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
            return -1;
        }
        *deadline = 0; /* IL_TO_SEM: multiprocessing ignores the timeout */
        return 0;
    }
    if (!has_t || isinf(t) > 0) {
        *deadline = IL_FOREVER;
        return 0;
    }
    if (t < 0) {
        if (rule == IL_TO_LOCK) {
            PyErr_SetString(PyExc_ValueError, "timeout value must be a non-negative number");
            return -1;
        }
        if (rule == IL_TO_QUEUE) {
            PyErr_SetString(PyExc_ValueError, "'timeout' must be a non-negative number");
            return -1;
        }
        t = 0; /* IL_TO_SEM, IL_TO_WAIT: time out at once */
    }
    *deadline = t == 0 ? 0 : il_deadline_after(t);
    return 0;
}

/* ------------------------------------------------------------ waiting */

int il_spin_until(int budget, int (*ready)(void *p, uint64_t arg), void *p, uint64_t arg)
{
    if (budget <= 0)
        return 0;
    int64_t until = il_now_ns() + budget;
    for (int i = 0;; i++) {
        if (ready(p, arg))
            return 1;
        il_cpu_relax();
        if ((i & 31) == 31 && il_now_ns() >= until)
            return 0;
    }
}

int il_yield_until(int budget, int (*ready)(void *p, uint64_t arg), void *p, uint64_t arg)
{
    if (budget <= 0)
        return 0;
    int64_t until = il_now_ns() + budget;
    for (;;) {
        sched_yield();
        if (ready(p, arg))
            return 1;
        if (il_now_ns() >= until)
            return 0;
    }
}

int il_lock_mutex(ShmObject *self, il_mutex_t *m, int64_t deadline, uint32_t *dead, int *counted)
{
    return il_lock_mutex_flags(self, m, deadline, dead, counted, 0);
}

int il_lock_mutex_flags(ShmObject *self, il_mutex_t *m, int64_t deadline, uint32_t *dead,
                        int *counted, int flags)
{
    if (il_mutex_trylock(m, il_self_tid()))
        return IL_OK;
    for (;;) {
        int r;
        if (deadline == 0) {
            r = il_mutex_lock_flags(m, 0, dead, counted, flags);
        } else {
            self->busy++;
            Py_BEGIN_ALLOW_THREADS
            r = il_mutex_lock_flags(m, deadline, dead, counted, flags);
            Py_END_ALLOW_THREADS
            self->busy--;
        }
        if (r != IL_INTR)
            return r;
        if (PyErr_CheckSignals() < 0)
            return -1;
    }
}

/* ------------------------------------------------------------ reports */

int il_report_owner_died(PyObject *self, uint32_t dead)
{
    PyObject *fn = PyObject_GetAttr(self, str_on_owner_died);
    if (!fn) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear(); /* a bare _core object: silent */
        return 0;
    }
    PyObject *pid = PyLong_FromUnsignedLong(dead);
    PyObject *res = pid ? PyObject_CallOneArg(fn, pid) : NULL;
    Py_XDECREF(pid);
    Py_DECREF(fn);
    if (!res)
        return -1;
    Py_DECREF(res);
    return 0;
}

/* ------------------------------------------------------------ init */

static PyObject *import_attr(const char *module, const char *name)
{
    PyObject *m = PyImport_ImportModule(module);
    if (!m)
        return NULL;
    PyObject *a = PyObject_GetAttrString(m, name);
    Py_DECREF(m);
    return a;
}

int il_binding_init(PyObject *module)
{
    (void)module;
    str_on_owner_died = PyUnicode_InternFromString("_on_owner_died");
    str_adopt = PyUnicode_InternFromString("_adopt");
    if (!str_on_owner_died || !str_adopt)
        return -1;
    /* The errors module is pure Python and imports nothing of ours, so the
     * core can import it while interlock/__init__ is still running. */
    const char *errors = "interlock.errors";
    if (!(il_Empty = import_attr(errors, "Empty")) || !(il_Full = import_attr(errors, "Full")) ||
        !(il_QueueClosed = import_attr(errors, "QueueClosed")) ||
        !(il_DeadlockError = import_attr(errors, "DeadlockError")) ||
        !(il_BrokenBarrierError = import_attr("threading", "BrokenBarrierError")))
        return -1;
    PyObject *tmax = import_attr("_thread", "TIMEOUT_MAX");
    if (!tmax)
        return -1;
    lock_timeout_max = PyFloat_AsDouble(tmax);
    Py_DECREF(tmax);
    if (lock_timeout_max == -1.0 && PyErr_Occurred())
        return -1;
    return 0;
}

int il_add_functions(PyObject *module, PyMethodDef *defs)
{
    for (PyMethodDef *f = defs; f->ml_name; f++) {
        PyObject *fn = PyCFunction_New(f, NULL);
        if (!fn || PyModule_AddObject(module, f->ml_name, fn) < 0) {
            Py_XDECREF(fn);
            return -1;
        }
    }
    return 0;
}
