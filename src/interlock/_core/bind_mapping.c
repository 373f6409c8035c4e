/*
 * bind_mapping.c -- `_core.Mapping`: a shared mapping of a segment that keeps no
 * file descriptor.
 *
 * CPython's mmap.mmap keeps a dup() of the descriptor it maps, for size()
 * and resize(); Python 3.13 added trackfd=False to avoid it, and interlock
 * supports older versions.  With one dup per attached object, a process
 * reached EMFILE at about 1,000 objects (the usual soft RLIMIT_NOFILE is
 * 1,024).  mmap(2) does not need the descriptor once it returns: the mapping
 * holds a reference to the file itself.  So the segment code maps with this
 * type and closes its descriptor at once (docs/design/segment.md).
 *
 * What the segment code and the objects need from it, and nothing else:
 * - the buffer protocol (writable), which the C types (Ring, Mutex, the sync
 *   family), struct.pack_into, ctypes' from_buffer and memoryview use;
 *   `exports` counts the views, and close() refuses while any is alive, so
 *   a live view never points to unmapped memory (as mmap.mmap does);
 * - indexing and slicing as mmap.mmap does (an int, or bytes), and slice
 *   assignment of the same length;
 * - load32/store32, load64/store64: single-copy-atomic words (the slot
 *   table's commit words, start times and ticket expiries, the deadlock
 *   table's record count: docs/design/segment.md).  Never struct.pack_into
 *   for a word that another process may read, or that a process killed
 *   mid-update leaves behind: CPython's pack_into first zero-fills the
 *   destination, then writes the value (three stores for one "<Q"); a
 *   SIGKILL between them leaves 0, and an unlocked reader can see the 0;
 * - populate(): commit pages of a sparse file (the slot table grows by
 *   pages) without the SIGBUS that touching a page fails with when
 *   /dev/shm is full.
 * No resize: a segment never changes size once linked.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <string.h>
#include <unistd.h>

#include "spillpool.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

typedef struct {
    PyObject_HEAD
    char *addr;        /* NULL once closed */
    Py_ssize_t size;
    Py_ssize_t exports; /* live buffer views: close() waits for none */
    char *pool_path;   /* a pooled spill file: handed back at unmap (spillpool.h) */
    uint32_t pool_gen; /* il_pool_fork_gen when it was mapped */
    il_warm_ref_t warm; /* a kept mapping (bind_warmmap.c): kept, not unmapped, at the end */
} MappingObject;

/* Unmap; a pooled spill file is handed back to its producer first (its
 * trailer is in the mapping). */
static void mapping_unmap(MappingObject *self)
{
    if (!self->addr)
        return;
    int reusable = 0;
    if (self->pool_path) {
        reusable = il_pool_release(
            (il_pool_trailer_t *)(self->addr + self->size - sizeof(il_pool_trailer_t)),
            self->pool_path, self->pool_gen);
        PyMem_RawFree(self->pool_path);
        self->pool_path = NULL;
    }
    /* a kept mapping stays mapped if its file may carry a later item */
    int keep = self->warm.slot >= 0 && il_warm_put_back(&self->warm, self->addr, reusable);
    self->warm.slot = -1;
    if (!keep)
        munmap(self->addr, (size_t)self->size);
    self->addr = NULL;
}

extern PyTypeObject il_MappingType;

/* A Mapping of memory already mapped (a kept mapping, bind_warmmap.c):
 * no mmap; its end unmaps it as any other unless il_mapping_set_pool and
 * il_mapping_set_warm make it hand the file back and keep it.  New
 * reference, or NULL with an exception. */
PyObject *il_mapping_wrap(char *addr, Py_ssize_t size)
{
    MappingObject *self = (MappingObject *)il_MappingType.tp_alloc(&il_MappingType, 0);
    if (!self)
        return NULL;
    self->addr = addr;
    self->size = size;
    self->warm.slot = -1;
    return (PyObject *)self;
}

/* Make the end of `mapping` go through the warm table (il_warm_put_back). */
void il_mapping_set_warm(PyObject *mapping, const il_warm_ref_t *ref)
{
    ((MappingObject *)mapping)->warm = *ref;
}

/* Make `mapping` (of a whole pooled spill file, its trailer checked) hand
 * the file back when it is unmapped.  0, or -1 with MemoryError. */
int il_mapping_set_pool(PyObject *mapping, const char *path)
{
    MappingObject *self = (MappingObject *)mapping;
    size_t n = strlen(path) + 1;
    self->pool_path = PyMem_RawMalloc(n);
    if (!self->pool_path) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(self->pool_path, path, n);
    /* relaxed: this process's own counter (pthread_atfork) */
    self->pool_gen = atomic_load_explicit(&il_pool_fork_gen, memory_order_relaxed);
    return 0;
}


static int mapping_ok(MappingObject *self)
{
    if (!self->addr) {
        PyErr_SetString(PyExc_ValueError, "mapping closed");
        return 0;
    }
    return 1;
}

static PyObject *Mapping_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"fd", "size", "populate", NULL};
    int fd, populate = 0;
    Py_ssize_t size;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "in|p:Mapping", kw, &fd, &size, &populate))
        return NULL;
    if (size <= 0) {
        PyErr_SetString(PyExc_ValueError, "size must be positive");
        return NULL;
    }
    MappingObject *self = (MappingObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    void *p;
    Py_BEGIN_ALLOW_THREADS
    /* populate: map every page now, in one call, instead of a fault per
     * page on first touch (a spill file read whole: spill.md) */
    p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
             MAP_SHARED | (populate ? MAP_POPULATE : 0), fd, 0);
    Py_END_ALLOW_THREADS
    if (p == MAP_FAILED) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(self);
        return NULL;
    }
    self->addr = p;
    self->size = size;
    self->warm.slot = -1;
    return (PyObject *)self;
}

static void Mapping_dealloc(MappingObject *self)
{
    /* exports is 0 here: every view holds a reference to us. */
    mapping_unmap(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Mapping_getbuffer(MappingObject *self, Py_buffer *view, int flags)
{
    if (!mapping_ok(self)) {
        view->obj = NULL;
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->addr, self->size, 0, flags) < 0)
        return -1;
    self->exports++;
    return 0;
}

static void Mapping_releasebuffer(MappingObject *self, Py_buffer *view)
{
    (void)view;
    self->exports--;
}

static PyBufferProcs Mapping_as_buffer = {(getbufferproc)Mapping_getbuffer,
                                          (releasebufferproc)Mapping_releasebuffer};

static PyObject *Mapping_close(MappingObject *self, PyObject *unused)
{
    if (self->exports > 0) {
        PyErr_SetString(PyExc_BufferError, "cannot close a mapping while views of it exist");
        return NULL;
    }
    mapping_unmap(self);
    Py_RETURN_NONE;
}

static int word_offset_n(MappingObject *self, Py_ssize_t off, Py_ssize_t n)
{
    if (!mapping_ok(self))
        return 0;
    if (off < 0 || off % n != 0 || off > self->size - n) {
        PyErr_Format(PyExc_ValueError, "bad %d-bit word offset %zd", (int)(8 * n), off);
        return 0;
    }
    return 1;
}

static int word_offset(MappingObject *self, Py_ssize_t off) { return word_offset_n(self, off, 4); }

static PyObject *Mapping_load32(MappingObject *self, PyObject *arg)
{
    Py_ssize_t off = PyLong_AsSsize_t(arg);
    if ((off == -1 && PyErr_Occurred()) || !word_offset(self, off))
        return NULL;
    /* relaxed: a single-copy-atomic read.  Writers hold the segment's meta
     * lock, whose acquire/release orders everything a locked reader needs;
     * an unlocked reader (scan, the registry) takes a racy snapshot and
     * only needs the word whole, never torn. */
    uint32_t v = atomic_load_explicit((_Atomic uint32_t *)(self->addr + off), memory_order_relaxed);
    return PyLong_FromUnsignedLong(v);
}

static PyObject *Mapping_store32(MappingObject *self, PyObject *args)
{
    Py_ssize_t off;
    unsigned int v;
    if (!PyArg_ParseTuple(args, "nI:store32", &off, &v) || !word_offset(self, off))
        return NULL;
    /* release: a slot's pid is its commit word (segment.md): the start time
     * and refs written before it must be visible to whoever sees the pid.
     * (Under the meta lock that is already so; the unlocked readers get it
     * from this.)  One store: a process killed here wrote it or did not. */
    atomic_store_explicit((_Atomic uint32_t *)(self->addr + off), v, memory_order_release);
    Py_RETURN_NONE;
}

static PyObject *Mapping_load64(MappingObject *self, PyObject *arg)
{
    Py_ssize_t off = PyLong_AsSsize_t(arg);
    if ((off == -1 && PyErr_Occurred()) || !word_offset_n(self, off, 8))
        return NULL;
    /* relaxed, as load32: whole, never torn; ordering comes from the meta
     * lock (locked readers) or from the commit word read before it. */
    uint64_t v = atomic_load_explicit((_Atomic uint64_t *)(self->addr + off), memory_order_relaxed);
    return PyLong_FromUnsignedLongLong(v);
}

static PyObject *Mapping_store64(MappingObject *self, PyObject *args)
{
    Py_ssize_t off;
    unsigned long long v;
    if (!PyArg_ParseTuple(args, "nK:store64", &off, &v) || !word_offset_n(self, off, 8))
        return NULL;
    /* release, as store32: what was written before it (a record before its
     * count) is visible to whoever sees the new value.  One aligned 8-byte
     * store: a process killed here wrote it or did not. */
    atomic_store_explicit((_Atomic uint64_t *)(self->addr + off), (uint64_t)v, memory_order_release);
    Py_RETURN_NONE;
}

static PyObject *Mapping_populate(MappingObject *self, PyObject *args)
{
    Py_ssize_t off, len;
    if (!PyArg_ParseTuple(args, "nn:populate", &off, &len) || !mapping_ok(self))
        return NULL;
    long page = sysconf(_SC_PAGESIZE);
    if (off < 0 || len < 0 || off % page != 0 || len > self->size - off) {
        PyErr_Format(PyExc_ValueError, "bad page range %zd+%zd", off, len);
        return NULL;
    }
    if (len == 0)
        Py_RETURN_NONE;
    /* Allocates the tmpfs pages now; where /dev/shm is full it fails with
     * EFAULT instead of the SIGBUS a plain write would take. */
    if (madvise(self->addr + off, (size_t)len, MADV_POPULATE_WRITE) == 0)
        Py_RETURN_NONE;
    if (errno == EFAULT) {
        errno = ENOSPC;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (errno != EINVAL)
        return PyErr_SetFromErrno(PyExc_OSError);
    /* Kernel before 5.14: fault the pages in with writes that change
     * nothing (an atomic add of 0: a concurrent writer's bytes survive;
     * relaxed, no ordering is needed for a no-op).  On a full /dev/shm this
     * is the SIGBUS the fallocate at creation avoids for the rest. */
    for (Py_ssize_t i = 0; i < len; i += page)
        atomic_fetch_add_explicit((_Atomic uint32_t *)(self->addr + off + i), 0,
                                  memory_order_relaxed);
    Py_RETURN_NONE;
}

static PyObject *Mapping_get_closed(MappingObject *self, void *unused)
{
    return PyBool_FromLong(self->addr == NULL);
}

static Py_ssize_t Mapping_length(MappingObject *self)
{
    if (!mapping_ok(self))
        return -1;
    return self->size;
}

/* Indexing and slicing go through a temporary memoryview (its rules for
 * indices, slices and lengths), then give what mmap.mmap gives: an int for
 * an index, bytes for a slice (a copy: no view outlives the expression). */
static PyObject *Mapping_subscript(MappingObject *self, PyObject *key)
{
    PyObject *mv = PyMemoryView_FromObject((PyObject *)self);
    if (!mv)
        return NULL;
    PyObject *r = PyObject_GetItem(mv, key);
    if (r && PyMemoryView_Check(r)) {
        PyObject *b = PyBytes_FromObject(r);
        PyObject *rel = PyObject_CallMethod(r, "release", NULL);
        Py_XDECREF(rel);
        Py_DECREF(r);
        r = b;
    }
    PyObject *rel = PyObject_CallMethod(mv, "release", NULL);
    if (!rel) {
        Py_XDECREF(r);
        r = NULL;
    }
    Py_XDECREF(rel);
    Py_DECREF(mv);
    return r;
}

static int Mapping_ass_subscript(MappingObject *self, PyObject *key, PyObject *value)
{
    if (!value) {
        PyErr_SetString(PyExc_TypeError, "cannot delete from a mapping");
        return -1;
    }
    PyObject *mv = PyMemoryView_FromObject((PyObject *)self);
    if (!mv)
        return -1;
    int r = PyObject_SetItem(mv, key, value);
    PyObject *rel = PyObject_CallMethod(mv, "release", NULL);
    if (!rel)
        r = -1;
    Py_XDECREF(rel);
    Py_DECREF(mv);
    return r;
}

static PyMappingMethods Mapping_as_mapping = {(lenfunc)Mapping_length,
                                              (binaryfunc)Mapping_subscript,
                                              (objobjargproc)Mapping_ass_subscript};

static PyObject *Mapping_enter(PyObject *self, PyObject *unused) { return Py_NewRef(self); }

static PyObject *Mapping_exit(MappingObject *self, PyObject *args)
{
    return Mapping_close(self, NULL);
}

static PyMethodDef Mapping_methods[] = {
    {"close", (PyCFunction)Mapping_close, METH_NOARGS,
     "close()\n--\n\nUnmap (BufferError while views exist). Idempotent."},
    {"load32", (PyCFunction)Mapping_load32, METH_O,
     "load32(offset)\n--\n\nAtomic read of the aligned u32 at offset."},
    {"store32", (PyCFunction)Mapping_store32, METH_VARARGS,
     "store32(offset, value)\n--\n\nAtomic (release) store of an aligned u32."},
    {"load64", (PyCFunction)Mapping_load64, METH_O,
     "load64(offset)\n--\n\nAtomic read of the aligned u64 at offset."},
    {"store64", (PyCFunction)Mapping_store64, METH_VARARGS,
     "store64(offset, value)\n--\n\nAtomic (release) store of an aligned u64."},
    {"populate", (PyCFunction)Mapping_populate, METH_VARARGS,
     "populate(offset, length)\n--\n\nAllocate these pages of the file now (OSError ENOSPC "
     "if /dev/shm is full)."},
    {"__enter__", (PyCFunction)Mapping_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Mapping_exit, METH_VARARGS, NULL},
    {NULL}};

static PyGetSetDef Mapping_getset[] = {{"closed", (getter)Mapping_get_closed, NULL, NULL, NULL},
                                       {NULL}};

PyTypeObject il_MappingType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "interlock._core.Mapping",
    .tp_basicsize = sizeof(MappingObject),
    .tp_dealloc = (destructor)Mapping_dealloc,
    .tp_as_mapping = &Mapping_as_mapping,
    .tp_as_buffer = &Mapping_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Mapping(fd, size)\n--\n\nA MAP_SHARED mapping of fd's first "
              "size bytes that keeps no descriptor: close fd right after.",
    .tp_methods = Mapping_methods,
    .tp_getset = Mapping_getset,
    .tp_new = Mapping_new,
};
