/*
 * shmobject.h -- the Python object that every type of the core is: a view
 * of one struct in a segment (module.c: Ring, Mutex; sync_module.c: the sync
 * family).
 *
 * It holds a buffer export on the segment's mmap, so the mapping cannot be
 * closed under it.  `busy` counts calls in flight with the GIL released, so
 * that _detach() from another thread cannot unmap under a sleeper.
 */
#ifndef INTERLOCK_SHMOBJECT_H
#define INTERLOCK_SHMOBJECT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    void *p;             /* our struct in the segment; NULL once detached */
    int busy;            /* calls in flight with the GIL released */
    int spin_ns;         /* Ring: adaptive spin budget of ring_wait */
    unsigned spin_probe; /* Ring: waits since the budget fell to 0 */
    uint32_t hint;       /* sync family: index of this process's slot */
} ShmObject;

static inline int shm_check(ShmObject *self)
{
    if (!self->p) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed (detached) interlock object");
        return -1;
    }
    return 0;
}

static inline PyObject *shm_detach(ShmObject *self, PyObject *unused)
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

static inline void shm_dealloc(ShmObject *self)
{
    PyObject_GC_UnTrack(self);
    if (self->p) {
        self->p = NULL;
        PyBuffer_Release(&self->view);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static inline int shm_traverse(ShmObject *self, visitproc visit, void *arg)
{
    if (self->p)
        Py_VISIT(self->view.obj);
    return 0;
}

#endif
