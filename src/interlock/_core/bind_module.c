/*
 * bind_module.c -- the module interlock._core: its init (the types of the
 * bind_*.c files, the layout constants of layout.h, the exception classes
 * through binding.c) and its free functions (thread identity, liveness,
 * crash points, the timeout parser for Python).
 */
#include "binding.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bind_codec.h"
#include "crashpoint.h"
#include "layout.h"
#include "ring.h"

/* The other binding files' init and module functions. */
int il_codec_init(void);
int il_ring_binding_init(void);
int il_mutex_binding_init(void);
PyObject *il_mod_set_tracking(PyObject *m, PyObject *args);
int il_sync_register(PyObject *module);
int il_aio_register(PyObject *module);
extern PyTypeObject il_MappingType;
int il_resp_register(PyObject *m); /* bind_resp.c */
int il_pool_register(PyObject *m); /* bind_spillpool.c */
int il_warm_register(PyObject *m); /* bind_warmmap.c */
int il_loan_register(PyObject *m); /* bind_loan.c */


static PyObject *mod_self_tid(PyObject *m, PyObject *u) { return PyLong_FromUnsignedLong(il_self_tid()); }
static PyObject *mod_self_start(PyObject *m, PyObject *u)
{
    return PyLong_FromUnsignedLongLong(il_self_start());
}
static PyObject *mod_self_pid(PyObject *m, PyObject *u) { return PyLong_FromUnsignedLong(il_self_pid()); }
static PyObject *mod_ncpus(PyObject *m, PyObject *u) { return PyLong_FromLong(il_ncpus()); }

static PyObject *mod_task_alive(PyObject *m, PyObject *args)
{
    unsigned int tid;
    unsigned long long start = 0;
    if (!PyArg_ParseTuple(args, "I|K:task_alive", &tid, &start))
        return NULL;
    return PyBool_FromLong(tid != 0 && il_task_alive(tid, start));
}

static PyObject *mod_task_start(PyObject *m, PyObject *args)
{
    unsigned int tid;
    if (!PyArg_ParseTuple(args, "I:task_start", &tid))
        return NULL;
    uint64_t s = 0;
    char st = '?';
    int r = il_task_stat(tid, &s, &st);
    if (r != 1)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(s);
}

static PyObject *mod_ring_bytes(PyObject *m, PyObject *arg)
{
    unsigned long long size = PyLong_AsUnsignedLongLong(arg);
    if (size == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    return PyLong_FromSize_t(il_ring_bytes(size));
}

static PyObject *mod_crash_points(PyObject *m, PyObject *u)
{
    PyObject *list = PyList_New(IL_CP_COUNT);
    for (int i = 0; list && i < IL_CP_COUNT; i++) {
        PyObject *t = Py_BuildValue("(ss)", il_crash_name(i), il_crash_what(i));
        if (!t) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, t);
    }
    return list;
}

static PyObject *mod_crash_arm(PyObject *m, PyObject *args)
{
    const char *name;
    long nth = 1;
    if (!PyArg_ParseTuple(args, "z|l:_crash_arm", &name, &nth))
        return NULL;
    int rc = il_crash_arm(name, nth);
    if (rc == -2) {
        PyErr_SetString(PyExc_RuntimeError,
                        "crash points exist only in a test build (INTERLOCK_TEST_BUILD=1)");
        return NULL;
    }
    if (rc < 0) {
        PyErr_Format(PyExc_ValueError, "no crash point named %s", name);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* THE timeout parser (binding.c) for the waits written in Python
 * (Condition.wait, Barrier.wait), so that they follow the same rules. */
static PyObject *mod_parse_timeout(PyObject *m, PyObject *args)
{
    int rule;
    PyObject *timeout, *block = NULL;
    if (!PyArg_ParseTuple(args, "iO|O:parse_timeout", &rule, &timeout, &block))
        return NULL;
    if (rule < IL_TO_LOCK || rule > IL_TO_QUEUE) {
        PyErr_SetString(PyExc_ValueError, "parse_timeout: unknown rule");
        return NULL;
    }
    int64_t deadline;
    if (il_parse_timeout(rule, block, timeout, &deadline) < 0)
        return NULL;
    if (deadline == IL_FOREVER)
        Py_RETURN_NONE;
    if (deadline == 0)
        return PyFloat_FromDouble(0.0);
    int64_t left = deadline - il_now_ns();
    return PyFloat_FromDouble(left > 0 ? (double)left / 1e9 : 1e-9);
}

static PyMethodDef mod_methods[] = {
    {"_set_tracking", il_mod_set_tracking, METH_VARARGS,
     "_set_tracking(track_all_locks, deadlock_timeout_s): lockdep on/off; runtime "
     "detection after this many seconds of waiting (0 = off)."},
    {"crash_points", mod_crash_points, METH_NOARGS,
     "crash_points(): [(name, what is held there)] of the C core's crash points."},
    {"_crash_arm", mod_crash_arm, METH_VARARGS,
     "_crash_arm(name, nth=1): _exit(77) the nth time this process reaches the point "
     "(None disarms). For tests only."},
    {"self_tid", mod_self_tid, METH_NOARGS, "The calling thread's TID."},
    {"self_start", mod_self_start, METH_NOARGS, "The calling thread's start time (clock ticks)."},
    {"self_pid", mod_self_pid, METH_NOARGS, "The calling process's pid (cached; reset at fork)."},
    {"ncpus", mod_ncpus, METH_NOARGS, "CPUs this process may run on."},
    {"task_alive", mod_task_alive, METH_VARARGS,
     "task_alive(tid, start=0): is this thread/process alive (zombies are dead)?"},
    {"task_start", mod_task_start, METH_VARARGS,
     "task_start(tid): start time in clock ticks, or None if no such task."},
    {"_nd_streams", il_codec_nd_streams, METH_NOARGS,
     "_nd_streams(): (numpy arrays sent with a kept pickle stream, numpy arrays pickled) "
     "by this process. For tests only."},
    {"ring_bytes", mod_ring_bytes, METH_O, "ring_bytes(size): bytes a ring of this size needs."},
    {"parse_timeout", mod_parse_timeout, METH_VARARGS,
     "parse_timeout(rule, timeout, block=True): seconds left under the C core's timeout rules "
     "(TIMEOUT_*): None forever, 0.0 try once, else > 0; raises as the C calls do."},
    {NULL}};

static struct PyModuleDef coremodule = {PyModuleDef_HEAD_INIT, "interlock._core",
                                        "interlock's C core: robust mutex and shared ring.", -1,
                                        mod_methods};

PyMODINIT_FUNC PyInit__core(void)
{
    PyTypeObject *types[] = {&il_RingType,      &il_MutexType,   &il_SemaphoreType,
                             &il_RWLockType,    &il_EventType,   &il_BarrierType,
                             &il_ConditionType, &il_MappingType};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (PyType_Ready(types[i]) < 0)
            return NULL;
    PyObject *m = PyModule_Create(&coremodule);
    if (!m)
        return NULL;
    if (il_binding_init(m) < 0 || il_codec_init() < 0 || il_ring_binding_init() < 0 ||
        il_mutex_binding_init() < 0)
        goto fail;
    /* INTERLOCK_CRASH_AT=name[:nth] arms a crash point: in a test build
     * only, so that no environment can make an application _exit(77). */
    const char *spec = IL_CRASHPOINTS_BUILD ? getenv("INTERLOCK_CRASH_AT") : NULL;
    if (spec && *spec) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s", spec);
        long nth = 1;
        char *colon = strchr(buf, ':');
        if (colon) {
            *colon = 0;
            nth = strtol(colon + 1, NULL, 10);
        }
        il_crash_arm(buf, nth); /* an unknown name (a Python-level point) is left to Python */
    }
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const char *name = strrchr(types[i]->tp_name, '.') + 1;
        Py_INCREF(types[i]);
        if (PyModule_AddObject(m, name, (PyObject *)types[i]) < 0) {
            Py_DECREF(types[i]);
            goto fail;
        }
    }
#define IL_ADD_LAYOUT(name, value)                                                     \
    if (PyModule_AddIntConstant(m, #name, (long)(value)) < 0)                         \
        goto fail;
    IL_LAYOUT(IL_ADD_LAYOUT)
#undef IL_ADD_LAYOUT
    if (PyModule_AddIntConstant(m, "RING_MAX_SIZE", IL_RING_MAX_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "CACHELINE", IL_CACHELINE) < 0 ||
        PyModule_AddIntConstant(m, "CRASH_EXIT", IL_CRASH_EXIT) < 0 ||
        PyModule_AddIntConstant(m, "CRASHPOINTS", IL_CRASHPOINTS_BUILD) < 0 ||
        PyModule_AddIntConstant(m, "TIMEOUT_LOCK", IL_TO_LOCK) < 0 ||
        PyModule_AddIntConstant(m, "TIMEOUT_SEMAPHORE", IL_TO_SEM) < 0 ||
        PyModule_AddIntConstant(m, "TIMEOUT_WAIT", IL_TO_WAIT) < 0 ||
        PyModule_AddIntConstant(m, "TIMEOUT_QUEUE", IL_TO_QUEUE) < 0 ||
        il_sync_register(m) < 0 || il_aio_register(m) < 0 || il_resp_register(m) < 0 ||
        il_pool_register(m) < 0 || il_warm_register(m) < 0 ||
        il_loan_register(m) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
