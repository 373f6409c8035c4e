/*
 * bind_aio.c -- the asyncio helper's functions in the module (_aio_wait,
 * _aio_bell, _aio_ring, _aio_pass_on): argument checks and the GIL around
 * aio.c, which holds the algorithm and its reasons.
 */
#include "binding.h"

#include "aio.h"
#include "ring.h"

static PyObject *Aio_wait(PyObject *mod, PyObject *args)
{
    PyObject *seq;
    unsigned int bell;
    if (!PyArg_ParseTuple(args, "OI:_aio_wait", &seq, &bell))
        return NULL;
    PyObject *fast = PySequence_Fast(seq, "_aio_wait: targets must be a sequence");
    if (!fast)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    il_aio_target_t *ts = PyMem_Calloc(n ? (size_t)n : 1, sizeof *ts);
    ShmObject **objs = PyMem_Calloc(n ? (size_t)n : 1, sizeof *objs);
    if (!ts || !objs) {
        PyMem_Free(ts);
        PyMem_Free(objs);
        Py_DECREF(fast);
        return PyErr_NoMemory();
    }
    Py_ssize_t got = 0;
    for (; got < n; got++) {
        PyObject *o;
        int kind;
        unsigned long long arg;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, got), "OiK:_aio_wait target", &o,
                              &kind, &arg))
            goto fail;
        int ok = (kind == AIO_READABLE || kind == AIO_WRITABLE) ? PyObject_TypeCheck(o, &il_RingType)
                 : kind == AIO_UNLOCKED                        ? PyObject_TypeCheck(o, &il_MutexType)
                 : kind == AIO_SET                             ? PyObject_TypeCheck(o, &il_EventType)
                                                               : 0;
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "_aio_wait: kind %d does not fit %s", kind,
                         Py_TYPE(o)->tp_name);
            goto fail;
        }
        if (shm_check((ShmObject *)o) < 0)
            goto fail;
        objs[got] = (ShmObject *)o;
        ts[got].p = objs[got]->p;
        ts[got].kind = kind;
        ts[got].arg = kind == AIO_WRITABLE ? IL_ALIGN8(sizeof(il_rec_t) + arg) : arg;
        /* With the GIL: detach() refuses while we sleep on the object. */
        objs[got]->busy++;
    }
    int woken;
    Py_BEGIN_ALLOW_THREADS
    woken = il_aio_wait(ts, (int)n, bell);
    Py_END_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        objs[i]->busy--;
    PyMem_Free(objs);
    PyObject *ready = PyList_New(n);
    if (!ready) {
        PyMem_Free(ts);
        Py_DECREF(fast);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        PyList_SET_ITEM(ready, i, PyBool_FromLong(ts[i].ready));
    PyMem_Free(ts);
    Py_DECREF(fast);
    return Py_BuildValue("(Ni)", ready, woken >= n ? -1 : woken);
fail:
    for (Py_ssize_t i = 0; i < got; i++)
        objs[i]->busy--;
    PyMem_Free(objs);
    PyMem_Free(ts);
    Py_DECREF(fast);
    return NULL;
}

static PyObject *Aio_bell(PyObject *mod, PyObject *unused)
{
    return PyLong_FromUnsignedLong(il_aio_bell());
}

static PyObject *Aio_ring(PyObject *mod, PyObject *unused)
{
    il_aio_ring();
    Py_RETURN_NONE;
}

/* _aio_pass_on(obj, kind): a coroutine that was woken for an item, a room,
 * or the lock will not take it (cancelled): wake one more sleeper. */
static PyObject *Aio_pass_on(PyObject *mod, PyObject *args)
{
    PyObject *o;
    int kind;
    if (!PyArg_ParseTuple(args, "Oi:_aio_pass_on", &o, &kind))
        return NULL;
    if (!(((kind == AIO_READABLE || kind == AIO_WRITABLE) && PyObject_TypeCheck(o, &il_RingType)) ||
          (kind == AIO_UNLOCKED && PyObject_TypeCheck(o, &il_MutexType)) || (kind == AIO_SET && PyObject_TypeCheck(o, &il_EventType)))) {
        PyErr_SetString(PyExc_TypeError, "_aio_pass_on: kind does not fit the object");
        return NULL;
    }
    ShmObject *s = (ShmObject *)o;
    if (!s->p)
        Py_RETURN_NONE; /* detached: nothing to pass on from here */
    il_aio_pass_on(s->p, kind);
    Py_RETURN_NONE;
}

static PyMethodDef aio_functions[] = {
    {"_aio_wait", (PyCFunction)Aio_wait, METH_VARARGS,
     "_aio_wait(targets, bell) -> (ready, woken): arm every (obj, kind, arg) target, sleep "
     "until one may be ready or the doorbell moves past bell, disarm."},
    {"_aio_bell", (PyCFunction)Aio_bell, METH_NOARGS, "The doorbell's current value."},
    {"_aio_ring", (PyCFunction)Aio_ring, METH_NOARGS, "Ring the doorbell: wake the helper."},
    {"_aio_pass_on", (PyCFunction)Aio_pass_on, METH_VARARGS, NULL},
    {NULL}};

int il_aio_register(PyObject *module)
{
    if (il_add_functions(module, aio_functions) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "AIO_READABLE", AIO_READABLE) < 0 ||
        PyModule_AddIntConstant(module, "AIO_WRITABLE", AIO_WRITABLE) < 0 ||
        PyModule_AddIntConstant(module, "AIO_UNLOCKED", AIO_UNLOCKED) < 0 ||
        PyModule_AddIntConstant(module, "AIO_SET", AIO_SET) < 0)
        return -1;
    return 0;
}
