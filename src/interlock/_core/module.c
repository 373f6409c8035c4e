/*
 * module.c -- the Python face of the C core: the types `Ring` and `Mutex`.
 *
 * Python classes subclass these types (interlock._queue.Queue is a Ring,
 * interlock._lock.Lock is a Mutex), so that q.put(x) and lock.acquire() are
 * one C call with no Python frame in between.  The Python layer owns the
 * segment (naming, lifetime, pickling by name) and hands us a writable
 * buffer (an mmap) and the offset of our struct in it.
 *
 * GIL: held on every fast path (no syscall, no wait).  Released only to wait
 * (spin, then futex) and re-taken to finish the operation.  Nothing that may
 * run Python code (pickling, unpickling, garbage collection through the
 * allocation of GC-tracked objects) happens while a ring lock is held: a
 * finalizer that used the same queue would otherwise deadlock on itself.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdio.h>
#include <unistd.h>
#include <structmember.h>

#include "aio.h"
#include "crashpoint.h"
#include "mutex.h"
#include "ring.h"
#include "shmobject.h"

int il_sync_register(PyObject *module);    /* sync_module.c */
int il_mapping_register(PyObject *module); /* mapping.c */

/* A waiter spins (polling the shared word, GIL released) before it sleeps
 * in the kernel, for an adaptive budget: shmobject.h, shm_spin_budget. */
/* Upper bound of one sleep: a notifier killed between its publish and its
 * wake-up costs sleepers at most this much. */
#define WAIT_SLICE_NS 100000000LL

/* ---------------------------------------------------------------- globals */

static PyObject *Empty, *Full, *QueueClosed, *DeadlockError;
static PyObject *pickle_dumps, *pickle_loads;
static PyObject *kw_buffer_callback, *kw_buffers, *protocol5;
static PyObject *str_on_owner_died;

/* ------------------------------------------------------------ arguments */

/* Minimal METH_FASTCALL|METH_KEYWORDS parser: positional-or-keyword names. */
static int parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, const char *const *names, int nnames,
                      int required, PyObject **out)
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

/* block/timeout -> absolute deadline (0 = do not wait, IL_FOREVER = no limit),
 * with the checks and messages of queue.Queue. */
static int parse_deadline(PyObject *block, PyObject *timeout, int64_t *deadline)
{
    int b = 1;
    if (block) {
        b = PyObject_IsTrue(block);
        if (b < 0)
            return -1;
    }
    if (!b) {
        *deadline = 0;
        return 0;
    }
    if (!timeout || timeout == Py_None) {
        *deadline = IL_FOREVER;
        return 0;
    }
    if (!PyFloat_Check(timeout) && !PyLong_Check(timeout) && !PyNumber_Check(timeout)) {
        PyErr_Format(PyExc_TypeError, "'timeout' must be a number or None, not %.100s",
                     Py_TYPE(timeout)->tp_name);
        return -1;
    }
    double t = PyFloat_AsDouble(timeout);
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    if (isnan(t) || t < 0) {
        PyErr_SetString(PyExc_ValueError, "'timeout' must be a non-negative number");
        return -1;
    }
    *deadline = il_deadline_after(t);
    return 0;
}

/* ------------------------------------------------------------ base object */

static int shm_attach(ShmObject *self, PyObject *buffer, Py_ssize_t offset, size_t need)
{
    if (self->p) {
        PyErr_SetString(PyExc_RuntimeError, "object is already initialised");
        return -1;
    }
    if (PyObject_GetBuffer(buffer, &self->view, PyBUF_WRITABLE) < 0)
        return -1;
    if (offset < 0 || offset % IL_CACHELINE != 0 || (size_t)offset > (size_t)self->view.len ||
        need > (size_t)self->view.len - (size_t)offset) {
        PyBuffer_Release(&self->view);
        PyErr_Format(PyExc_ValueError,
                     "segment too small or misaligned: need %zu bytes at offset %zd, have %zd",
                     need, offset, self->view.len);
        return -1;
    }
    self->p = (char *)self->view.buf + offset;
    self->spin_ns = IL_SPIN_MAX_NS;
    self->pid = il_self_pid(); /* made here, after this process claimed its slot */
    return 0;
}

/* Take one of the ring's side locks (or a user Mutex), releasing the GIL only
 * if we must wait.  Returns IL_OK / IL_OWNER_DIED / IL_TIMEDOUT / IL_DEADLK,
 * or -1 with an exception (a signal handler raised). */
static inline int take_fast(il_mutex_t *m)
{
    uint32_t tid = il_self_tid();
    if (il_mutex_trylock_fast(m, tid)) {
        IL_CRASH(MUTEX_LOCKED);
        il_mutex_note_owner(m, tid);
        atomic_store_explicit(&m->acquisitions,
                              atomic_load_explicit(&m->acquisitions, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        return 1;
    }
    return 0;
}

/* *counted: see il_mutex_lock_counted (0 at the start of each acquisition). */
static int lock_mutex(ShmObject *self, il_mutex_t *m, int64_t deadline, uint32_t *dead,
                      int *counted)
{
    if (take_fast(m))
        return IL_OK;
    for (;;) {
        int r;
        if (deadline == 0) {
            r = il_mutex_lock_counted(m, 0, dead, counted);
        } else {
            self->busy++;
            Py_BEGIN_ALLOW_THREADS
            r = il_mutex_lock_counted(m, deadline, dead, counted);
            Py_END_ALLOW_THREADS
            self->busy--;
        }
        if (r != IL_INTR)
            return r;
        if (PyErr_CheckSignals() < 0)
            return -1;
    }
}

/* ================================================================= Ring */

typedef struct {
    ShmObject base;
} RingObject; /* base.roles: 1: this object has put, 2: has got (told to _note_role once) */

static PyObject *str_note_role;

/* The first put / get through this object: record the process's role in
 * the segment's slot table (for `interlock ls`: producers, consumers).  One
 * predictable branch per operation afterwards. */
static inline int note_role(RingObject *self, char role)
{
    if (__builtin_expect(self->base.roles & role, 1))
        return 0;
    self->base.roles |= (unsigned char)role;
    PyObject *et, *ev, *etb; /* a partial put_many may carry its Full: keep it */
    PyErr_Fetch(&et, &ev, &etb);
    if (PyObject_HasAttr((PyObject *)self, str_note_role)) {
        PyObject *r = PyObject_CallMethod((PyObject *)self, "_note_role", "i", (int)role);
        Py_XDECREF(r); /* statistics only: never fail the operation */
        PyErr_Clear();
    }
    PyErr_Restore(et, ev, etb);
    return 0;
}

#define RING(self) ((il_ring_t *)((ShmObject *)(self))->p)

/* One message, ready to be copied into the ring. */
#define MSG_INLINE_VIEWS 4
typedef struct {
    il_rec_t rec;
    uint64_t need;           /* aligned record size, header included */
    PyObject *owner;         /* keeps the source alive: bytes, or pickle output */
    const char *data;        /* main part: raw bytes or pickle stream */
    Py_ssize_t dlen;
    int nviews;              /* out-of-band buffers (and a bytearray's view) */
    int has_ba_view;         /* views[0] is a bytearray's own buffer */
    Py_buffer *views;
    Py_buffer inline_views[MSG_INLINE_VIEWS];
    uint64_t *lens;
    uint64_t inline_lens[MSG_INLINE_VIEWS];
    PyObject *buflist;
} msg_t;

static void msg_release(msg_t *m)
{
    for (int i = 0; i < m->nviews; i++)
        PyBuffer_Release(&m->views[i]);
    if (m->views && m->views != m->inline_views)
        PyMem_Free(m->views);
    if (m->lens && m->lens != m->inline_lens)
        PyMem_Free(m->lens);
    Py_CLEAR(m->owner);
    Py_CLEAR(m->buflist);
    m->nviews = 0;
    m->views = NULL;
    m->lens = NULL;
}

/* Pickle `obj` with protocol 5; out-of-band buffers go to m->views.
 * Returns 0, or -1 with an exception. */
static int msg_pickle(PyObject *obj, msg_t *m, int allow_oob)
{
    PyObject *res;
    if (allow_oob) {
        m->buflist = PyList_New(0);
        if (!m->buflist)
            return -1;
        PyObject *append = PyObject_GetAttrString(m->buflist, "append");
        if (!append)
            return -1;
        PyObject *args[3] = {obj, protocol5, append};
        res = PyObject_Vectorcall(pickle_dumps, args, 2, kw_buffer_callback);
        Py_DECREF(append);
    } else {
        PyObject *args[2] = {obj, protocol5};
        res = PyObject_Vectorcall(pickle_dumps, args, 2, NULL);
    }
    if (!res)
        return -1;
    if (!PyBytes_Check(res)) {
        Py_DECREF(res);
        PyErr_SetString(PyExc_TypeError, "pickle.dumps did not return bytes");
        return -1;
    }
    m->owner = res;
    m->data = PyBytes_AS_STRING(res);
    m->dlen = PyBytes_GET_SIZE(res);
    Py_ssize_t nb = m->buflist ? PyList_GET_SIZE(m->buflist) : 0;
    if (nb == 0)
        return 0;
    if (nb > 65535) {
        PyErr_SetString(PyExc_ValueError, "too many out-of-band buffers in one message (> 65535)");
        return -1;
    }
    if (nb > MSG_INLINE_VIEWS) {
        m->views = PyMem_Malloc(sizeof(Py_buffer) * nb);
        m->lens = PyMem_Malloc(sizeof(uint64_t) * nb);
        if (!m->views || !m->lens) {
            PyErr_NoMemory();
            return -1;
        }
    } else {
        m->views = m->inline_views;
        m->lens = m->inline_lens;
    }
    for (Py_ssize_t i = 0; i < nb; i++) {
        if (PyObject_GetBuffer(PyList_GET_ITEM(m->buflist, i), &m->views[i], PyBUF_C_CONTIGUOUS) < 0) {
            /* A non-contiguous buffer: pickle it in-band instead. */
            PyErr_Clear();
            msg_release(m);
            m->views = NULL;
            m->lens = NULL;
            return msg_pickle(obj, m, 0);
        }
        m->nviews = (int)i + 1;
        m->lens[i] = (uint64_t)m->views[i].len;
    }
    m->rec.nbufs = (uint16_t)nb;
    return 0;
}

/* Objects that can produce no out-of-band buffer: plain scalars, and tuples
 * or lists of them (shallow).  Pickled without a buffer_callback, which
 * saves building a list and a bound method per item (~90 ns). */
static inline int scalar(PyObject *o)
{
    PyTypeObject *t = Py_TYPE(o);
    return t == &PyLong_Type || t == &PyFloat_Type || t == &PyUnicode_Type ||
           t == &PyBool_Type || o == Py_None || t == &PyBytes_Type;
}

static int no_oob_buffers(PyObject *o)
{
    if (scalar(o))
        return 1;
    if ((PyTuple_CheckExact(o) || PyList_CheckExact(o)) && Py_SIZE(o) <= 32) {
        PyObject **items = PySequence_Fast_ITEMS(o);
        for (Py_ssize_t i = 0; i < Py_SIZE(o); i++)
            if (!scalar(items[i]))
                return 0;
        return 1;
    }
    return 0;
}

/* Returns 0, or -1 with an exception. */
static int msg_prepare(il_ring_t *r, PyObject *obj, msg_t *m)
{
    memset(m, 0, sizeof *m);
    if (PyBytes_CheckExact(obj)) {
        m->rec.kind = IL_REC_BYTES;
        Py_INCREF(obj);
        m->owner = obj;
        m->data = PyBytes_AS_STRING(obj);
        m->dlen = PyBytes_GET_SIZE(obj);
    } else if (PyByteArray_CheckExact(obj)) {
        /* A buffer export pins the bytearray: no other thread can resize it
         * while we copy. */
        m->rec.kind = IL_REC_BYTEARRAY;
        m->views = m->inline_views;
        if (PyObject_GetBuffer(obj, &m->views[0], PyBUF_SIMPLE) < 0)
            return -1;
        m->nviews = 1;
        m->has_ba_view = 1;
        m->data = m->views[0].buf;
        m->dlen = m->views[0].len;
    } else {
        m->rec.kind = IL_REC_PICKLE;
        if (msg_pickle(obj, m, !no_oob_buffers(obj)) < 0) {
            msg_release(m);
            return -1;
        }
    }
    uint64_t len = (uint64_t)m->dlen;
    if (!m->has_ba_view) {
        len += 8u * m->rec.nbufs;
        for (int i = 0; i < m->rec.nbufs; i++)
            len += m->lens[i];
    }
    m->need = IL_ALIGN8(sizeof(il_rec_t) + len);
    if (m->need > r->capacity) {
        msg_release(m);
        PyErr_Format(PyExc_ValueError,
                     "message of %llu bytes (header included) can never fit: the queue's "
                     "capacity is %llu bytes (pass a larger capacity= when creating it)",
                     (unsigned long long)m->need, (unsigned long long)r->capacity);
        return -1;
    }
    m->rec.len = (uint32_t)len;
    return 0;
}

/* Under plock, room checked: copy the record in at pos.  Returns new pos. */
static uint32_t msg_write(il_ring_t *r, uint32_t pos, msg_t *m)
{
    il_ring_write(r, pos, &m->rec, sizeof m->rec);
    IL_CRASH(RING_PUT_HEADER);
    uint32_t p = pos + (uint32_t)sizeof m->rec;
    if (m->rec.kind == IL_REC_PICKLE && m->rec.nbufs) {
        il_ring_write(r, p, m->lens, 8u * m->rec.nbufs);
        p += 8u * m->rec.nbufs;
    }
    il_ring_write(r, p, m->data, (size_t)m->dlen);
    p += (uint32_t)m->dlen;
    if (m->rec.kind == IL_REC_PICKLE) {
        for (int i = 0; i < m->nviews; i++) {
            il_ring_write(r, p, m->views[i].buf, (size_t)m->views[i].len);
            p += (uint32_t)m->views[i].len;
        }
    }
    return pos + (uint32_t)m->need;
}

/* A record copied out under clock, turned into a Python object after. */
typedef struct {
    uint8_t kind;
    uint16_t nbufs;
    PyObject *data;   /* bytes / bytearray / pickle stream (bytes) */
    PyObject **bufs;  /* nbufs bytearrays (PICKLE with out-of-band buffers) */
} raw_t;

static void raw_clear(raw_t *x)
{
    Py_CLEAR(x->data);
    if (x->bufs) {
        for (int i = 0; i < x->nbufs; i++)
            Py_XDECREF(x->bufs[i]);
        PyMem_Free(x->bufs);
        x->bufs = NULL;
    }
}

/* Under clock, data available at pos(head): copy the record out (allocating
 * only non-GC objects).  `avail`: the published bytes from pos on
 * (pos(tail) - pos).  Returns the record size, or 0 with an exception.
 *
 * A record is checked whole before a byte of it is copied: by I2 (ring.h)
 * the bytes in [pos(head), pos(tail)) are whole records, so a header whose
 * record runs past pos(tail) can only be damage (a foreign writer, a
 * corrupted file): report it and consume nothing, rather than hand out
 * bytes that nobody published. */
static uint64_t raw_read(il_ring_t *r, uint32_t pos, uint32_t avail, raw_t *x)
{
    il_rec_t rec;
    memset(x, 0, sizeof *x);
    if (avail < sizeof rec || (avail & 7u)) {
        PyErr_Format(PyExc_RuntimeError,
                     "interlock queue is corrupt: %u published bytes at position %u cannot hold "
                     "a record (was the segment written by something else?)",
                     avail, pos);
        return 0;
    }
    il_ring_read(r, pos, &rec, sizeof rec);
    uint64_t need = IL_ALIGN8(sizeof rec + (uint64_t)rec.len);
    if (need > r->capacity || need > avail ||
        (rec.kind != IL_REC_BYTES && rec.kind != IL_REC_BYTEARRAY && rec.kind != IL_REC_PICKLE) ||
        (rec.kind != IL_REC_PICKLE && rec.nbufs) || 8ull * rec.nbufs > rec.len) {
        PyErr_Format(PyExc_RuntimeError,
                     "interlock queue is corrupt: record of kind %u, length %u and %u buffer(s) "
                     "at position %u, with %u published bytes from there "
                     "(was the segment written by something else?)",
                     rec.kind, rec.len, rec.nbufs, pos, avail);
        return 0;
    }
    uint32_t p = pos + (uint32_t)sizeof rec;
    x->kind = rec.kind;
    if (rec.kind == IL_REC_BYTES) {
        x->data = PyBytes_FromStringAndSize(NULL, rec.len);
        if (!x->data)
            return 0;
        il_ring_read(r, p, PyBytes_AS_STRING(x->data), rec.len);
        return need;
    }
    if (rec.kind == IL_REC_BYTEARRAY) {
        x->data = PyByteArray_FromStringAndSize(NULL, rec.len);
        if (!x->data)
            return 0;
        il_ring_read(r, p, PyByteArray_AS_STRING(x->data), rec.len);
        return need;
    }
    uint64_t dlen = rec.len;
    if (rec.nbufs) {
        x->nbufs = rec.nbufs;
        x->bufs = PyMem_Calloc(rec.nbufs, sizeof(PyObject *));
        uint64_t *lens = PyMem_Malloc(8u * rec.nbufs);
        if (!x->bufs || !lens) {
            PyMem_Free(lens);
            PyErr_NoMemory();
            return 0;
        }
        il_ring_read(r, p, lens, 8u * rec.nbufs);
        p += 8u * rec.nbufs;
        uint64_t total = 8u * rec.nbufs;
        int bad = 0;
        for (int i = 0; i < rec.nbufs; i++) {
            bad |= lens[i] > rec.len; /* each bounded first: the sum cannot wrap */
            total += lens[i] > rec.len ? rec.len : lens[i];
        }
        if (bad || total > rec.len) {
            PyMem_Free(lens);
            PyErr_SetString(PyExc_RuntimeError, "interlock queue is corrupt: bad buffer lengths");
            return 0;
        }
        dlen = rec.len - total;
        uint32_t bp = p + (uint32_t)dlen;
        for (int i = 0; i < rec.nbufs; i++) {
            x->bufs[i] = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)lens[i]);
            if (!x->bufs[i]) {
                PyMem_Free(lens);
                return 0;
            }
            il_ring_read(r, bp, PyByteArray_AS_STRING(x->bufs[i]), lens[i]);
            bp += (uint32_t)lens[i];
        }
        PyMem_Free(lens);
    }
    x->data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)dlen);
    if (!x->data)
        return 0;
    il_ring_read(r, p, PyBytes_AS_STRING(x->data), dlen);
    return need;
}

/* After clock is released: the Python object.  Consumes x. */
static PyObject *raw_finish(raw_t *x)
{
    if (x->kind != IL_REC_PICKLE) {
        PyObject *o = x->data;
        x->data = NULL;
        return o;
    }
    PyObject *res;
    if (x->nbufs) {
        PyObject *list = PyList_New(x->nbufs);
        if (!list) {
            raw_clear(x);
            return NULL;
        }
        for (int i = 0; i < x->nbufs; i++) {
            PyList_SET_ITEM(list, i, x->bufs[i]);
            x->bufs[i] = NULL;
        }
        PyObject *args[3] = {x->data, list};
        res = PyObject_Vectorcall(pickle_loads, args, 1, kw_buffers);
        Py_DECREF(list);
    } else {
        res = PyObject_CallOneArg(pickle_loads, x->data);
    }
    raw_clear(x);
    return res;
}

/* ------------------------------------------------------------ waiting */

typedef int (*cond_fn)(il_ring_t *r, uint64_t arg);

static int cond_not_empty(il_ring_t *r, uint64_t unused) { return il_ring_readable(r); }

static int cond_room(il_ring_t *r, uint64_t need) { return il_ring_writable(r, need); }

static int cond_all_done(il_ring_t *r, uint64_t unused)
{
    return IL_CNT(atomic_load_explicit(&r->tail, memory_order_acquire)) ==
           atomic_load_explicit(&r->done, memory_order_acquire);
}

/* Notify after a publish.  Wakes that wake nobody are normal now and then
 * (a waiter between its prepare and its FUTEX_WAIT), but thousands in a row
 * mean a waiter died counted: repair the count (eventcount.h), which ends
 * the useless syscalls.  With the GIL held (`fruitless` is per object). */
#define FRUITLESS_REPAIR 4096

static inline void ring_notify(ShmObject *self, il_eventcount_t *ec, int n)
{
    int woke = il_ec_notify(ec, n);
    if (woke > 0) {
        self->fruitless = 0;
    } else if (woke == 0 && ++self->fruitless >= FRUITLESS_REPAIR) {
        self->fruitless = 0;
        il_ec_repair(ec);
    }
}

/* Wait (GIL released) until cond may hold or the deadline passes.
 * Returns IL_OK (retry the operation), IL_TIMEDOUT, or -1 (exception).
 * *woken (if not NULL): the IL_OK came from a FUTEX_WAIT that ended by a
 * wake-up, i.e. we may hold a notify's wake-up (see ring_wait_method). */
static int ring_wait(ShmObject *self, il_eventcount_t *ec, cond_fn cond, uint64_t arg,
                     int64_t deadline, int *woken)
{
    il_ring_t *r = (il_ring_t *)self->p;
    int res = IL_OK;
    int budget = shm_spin_budget(self);
    int done = 0;
    int slept = 0; /* the last il_ec_sleep returned IL_OK (woken or EAGAIN) */
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    if (budget > 0) {
        int64_t until = il_now_ns() + budget;
        for (int i = 0;; i++) {
            if (cond(r, arg)) {
                done = 1;
                break;
            }
            il_cpu_relax();
            if ((i & 31) == 31 && il_now_ns() >= until)
                break;
        }
    }
    while (!done) {
        uint32_t key = il_ec_prepare(ec);
        if (cond(r, arg)) {
            il_ec_cancel(ec);
            if (woken)
                *woken = slept;
            break;
        }
        int64_t now = il_now_ns();
        if (now >= deadline) {
            il_ec_cancel(ec);
            res = IL_TIMEDOUT;
            break;
        }
        int64_t slice = deadline - now < WAIT_SLICE_NS ? deadline - now : WAIT_SLICE_NS;
        int w = il_ec_sleep(ec, key, slice);
        slept = w == IL_OK;
        il_ec_cancel(ec);
        if (w == IL_TIMEDOUT) /* a whole slice with no wake: uncount dead waiters */
            il_ec_repair(ec);
        if (w == IL_INTR) {
            res = IL_INTR;
            break;
        }
        /* Woken, spurious, or a slice passed: check again. */
    }
    Py_END_ALLOW_THREADS
    self->busy--;
    shm_spin_adapt(self, budget, done);
    if (res == IL_INTR)
        return PyErr_CheckSignals() < 0 ? -1 : IL_OK;
    return res;
}

/* Lock a side; maps results to exceptions.  Returns 0 locked, 1 timed out,
 * -1 exception. */
static int ring_lock_side(RingObject *self, il_mutex_t *m, int64_t deadline)
{
    /* A side lock is held for one copy (microseconds), or by a dead process
     * until a waiter takes it over (one slice): block=False means "do not
     * wait for items or room", not "fail if another consumer is mid-copy",
     * as in queue.Queue, whose nowait calls also take its mutex. */
    if (deadline == 0)
        deadline = IL_FOREVER;
    int counted = 0;
    int r = lock_mutex((ShmObject *)self, m, deadline, NULL, &counted);
    if (r == IL_OK || r == IL_OWNER_DIED)
        return 0; /* a dead holder left the ring consistent (ring.h) */
    if (r == IL_TIMEDOUT)
        return 1;
    if (r == IL_DEADLK)
        PyErr_SetString(PyExc_RuntimeError,
                        "re-entrant use of an interlock queue from inside its own operation");
    return -1;
}

static PyObject *raise_closed(const char *what)
{
    PyErr_Format(QueueClosed, "%s on a closed queue", what);
    return NULL;
}

/* ------------------------------------------------------------ put */

/* Put the prepared messages m[0..n); blocking per deadline.  Returns the
 * number put (== n on success); on failure sets an exception. */
static Py_ssize_t ring_put_msgs(RingObject *self, msg_t *m, Py_ssize_t n, int64_t deadline,
                                int all_or_nothing)
{
    il_ring_t *r = RING(self);
    Py_ssize_t done = 0;
    while (done < n) {
        int lr = ring_lock_side(self, &r->plock, deadline);
        if (lr < 0)
            return done;
        if (lr == 1) {
            PyErr_SetString(Full, "timed out waiting for the queue's producer lock");
            return done;
        }
        IL_CRASH(RING_PUT_LOCKED);
        /* relaxed: under plock, tail was last written by a plock holder,
         * ordered by the lock's acquire. */
        uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
        uint64_t t = tail;
        Py_ssize_t k = done;
        if (atomic_load_explicit(&r->flags, memory_order_relaxed) & IL_RING_CLOSED) {
            il_mutex_unlock(&r->plock);
            raise_closed("put()");
            return done;
        }
        if (all_or_nothing) {
            uint64_t total = 0;
            for (Py_ssize_t i = 0; i < n; i++)
                total += m[i].need;
            if (il_ring_room(r, t, total, (uint32_t)n)) {
                for (; k < n; k++)
                    t = IL_PACK(IL_CNT(t) + 1, msg_write(r, IL_POS(t), &m[k]));
            }
        } else {
            while (k < n && il_ring_room(r, t, m[k].need, 1)) {
                t = IL_PACK(IL_CNT(t) + 1, msg_write(r, IL_POS(t), &m[k]));
                k++;
            }
        }
        if (k > done) {
            IL_CRASH(RING_PUT_PAYLOAD);
            /* The commit point.  release: the records' bytes are visible to
             * any consumer that acquire-loads this tail. */
            atomic_store_explicit(&r->tail, t, memory_order_release);
            IL_CRASH(RING_PUT_PUBLISHED);
        }
        il_mutex_unlock(&r->plock);
        if (k > done) {
            IL_CRASH(RING_PUT_UNLOCKED);
            ring_notify((ShmObject *)self, &r->not_empty, (int)(k - done));
            done = k;
            continue;
        }
        if (deadline == 0) {
            PyErr_SetString(Full, all_or_nothing && n > 1
                                      ? "not enough room in the queue for the whole batch"
                                      : "queue is full");
            return done;
        }
        int w = ring_wait((ShmObject *)self, &r->not_full, cond_room, m[done].need, deadline,
                           NULL);
        if (w < 0)
            return done;
        if (w == IL_TIMEDOUT) {
            PyErr_SetString(Full, "queue is full (timed out)");
            return done;
        }
    }
    return done;
}

static const char *const put_names[] = {"obj", "block", "timeout"};

static PyObject *Ring_put(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
    PyObject *a[3];
    int64_t deadline;
    if (nargs == 1 && !kwnames) {
        a[0] = args[0];
        deadline = IL_FOREVER;
    } else {
        if (parse_args("put", args, nargs, kwnames, put_names, 3, 1, a) < 0 ||
            parse_deadline(a[1], a[2], &deadline) < 0)
            return NULL;
    }
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    msg_t m;
    if (msg_prepare(RING(self), a[0], &m) < 0)
        return NULL;
    Py_ssize_t k = ring_put_msgs(self, &m, 1, deadline, 0);
    msg_release(&m);
    if (k != 1)
        return NULL;
    note_role(self, 1);
    Py_RETURN_NONE;
}

static PyObject *Ring_put_nowait(RingObject *self, PyObject *obj)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    msg_t m;
    if (msg_prepare(RING(self), obj, &m) < 0)
        return NULL;
    Py_ssize_t k = ring_put_msgs(self, &m, 1, 0, 0);
    msg_release(&m);
    if (k != 1)
        return NULL;
    note_role(self, 1);
    Py_RETURN_NONE;
}

static const char *const put_many_names[] = {"items", "block", "timeout"};

static PyObject *Ring_put_many(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    PyObject *a[3];
    int64_t deadline;
    if (parse_args("put_many", args, nargs, kwnames, put_many_names, 3, 1, a) < 0 ||
        parse_deadline(a[1], a[2], &deadline) < 0 || shm_check((ShmObject *)self) < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(a[0], "put_many() expects an iterable of items");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n == 0) {
        Py_DECREF(seq);
        Py_RETURN_NONE;
    }
    msg_t *m = PyMem_Calloc((size_t)n, sizeof(msg_t));
    if (!m) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    Py_ssize_t prepared = 0, put = 0;
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (; prepared < n; prepared++) {
        if (msg_prepare(RING(self), items[prepared], &m[prepared]) < 0)
            goto out;
    }
    put = ring_put_msgs(self, m, n, deadline, deadline == 0);
    if (put > 0)
        note_role(self, 1);
out:
    for (Py_ssize_t i = 0; i < prepared; i++)
        msg_release(&m[i]);
    PyMem_Free(m);
    Py_DECREF(seq);
    if (PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(Full) && put > 0) {
            /* Tell the caller how far the batch got. */
            PyObject *t, *v, *tb;
            PyErr_Fetch(&t, &v, &tb);
            PyErr_NormalizeException(&t, &v, &tb);
            PyObject *cnt = PyLong_FromSsize_t(put);
            if (cnt && v) {
                PyObject_SetAttrString(v, "put_count", cnt);
            }
            Py_XDECREF(cnt);
            PyErr_Restore(t, v, tb);
        }
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------ get */

static Py_ssize_t ring_get_raw_(RingObject *self, raw_t *out, Py_ssize_t max, int64_t deadline);

/* Take up to max records (at least 1) into out[].  Returns count, or -1. */
static Py_ssize_t ring_get_raw(RingObject *self, raw_t *out, Py_ssize_t max, int64_t deadline)
{
    Py_ssize_t k = ring_get_raw_(self, out, max, deadline);
    if (k > 0)
        note_role(self, 2);
    return k;
}

static Py_ssize_t ring_get_raw_(RingObject *self, raw_t *out, Py_ssize_t max, int64_t deadline)
{
    il_ring_t *r = RING(self);
    for (;;) {
        int lr = ring_lock_side(self, &r->clock, deadline);
        if (lr < 0)
            return -1;
        if (lr == 1) {
            PyErr_SetString(Empty, "timed out waiting for the queue's consumer lock");
            return -1;
        }
        IL_CRASH(RING_GET_LOCKED);
        /* acquire: see the close only together with every put before it
         * (close happens under plock after them); read before tail. */
        uint32_t flags = atomic_load_explicit(&r->flags, memory_order_acquire);
        /* relaxed: under clock, head was last written by a clock holder. */
        uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
        uint64_t h = head;
        Py_ssize_t k = 0;
        while (k < max && il_ring_has_data(r, h)) {
            /* r->cached_tail: the tail il_ring_has_data just found ahead of h */
            uint64_t need = raw_read(r, IL_POS(h), IL_POS(r->cached_tail) - IL_POS(h), &out[k]);
            if (!need) {
                raw_clear(&out[k]);
                break;
            }
            h = IL_PACK(IL_CNT(h) + 1, IL_POS(h) + (uint32_t)need);
            k++;
        }
        if (k > 0) {
            IL_CRASH(RING_GET_COPIED);
            /* The commit point.  release: we finished reading these bytes
             * before a producer can see them free and overwrite them. */
            atomic_store_explicit(&r->head, h, memory_order_release);
            IL_CRASH(RING_GET_PUBLISHED);
        }
        il_mutex_unlock(&r->clock);
        if (k > 0) {
            IL_CRASH(RING_GET_UNLOCKED);
            ring_notify((ShmObject *)self, &r->not_full, (int)k);
            if (PyErr_Occurred()) {
                /* a later record failed (memory): hand out what we have; the
                 * failed one is still in the ring. */
                PyErr_Clear();
            }
            return k;
        }
        if (PyErr_Occurred())
            return -1;
        if (flags & IL_RING_CLOSED) {
            PyErr_SetString(QueueClosed, "get() on a closed queue: it is closed and drained");
            return -1;
        }
        if (deadline == 0) {
            PyErr_SetNone(Empty);
            return -1;
        }
        int w = ring_wait((ShmObject *)self, &r->not_empty, cond_not_empty, 0, deadline, NULL);
        if (w < 0)
            return -1;
        if (w == IL_TIMEDOUT) {
            PyErr_SetNone(Empty);
            return -1;
        }
    }
}

static const char *const get_names[] = {"block", "timeout"};

static PyObject *Ring_get(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
    int64_t deadline = IL_FOREVER;
    if (nargs || kwnames) {
        PyObject *a[2];
        if (parse_args("get", args, nargs, kwnames, get_names, 2, 0, a) < 0 ||
            parse_deadline(a[0], a[1], &deadline) < 0)
            return NULL;
    }
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    raw_t x;
    if (ring_get_raw(self, &x, 1, deadline) < 0)
        return NULL;
    return raw_finish(&x);
}

static PyObject *Ring_get_nowait(RingObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    raw_t x;
    if (ring_get_raw(self, &x, 1, 0) < 0)
        return NULL;
    return raw_finish(&x);
}

static const char *const get_many_names[] = {"max_items", "block", "timeout"};

static PyObject *Ring_get_many(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    PyObject *a[3];
    int64_t deadline;
    if (parse_args("get_many", args, nargs, kwnames, get_many_names, 3, 0, a) < 0 ||
        parse_deadline(a[1], a[2], &deadline) < 0 || shm_check((ShmObject *)self) < 0)
        return NULL;
    Py_ssize_t max = 1024;
    if (a[0] && a[0] != Py_None) {
        if (!PyLong_Check(a[0])) {
            PyErr_Format(PyExc_TypeError, "'max_items' must be an int, not %.100s",
                         Py_TYPE(a[0])->tp_name);
            return NULL;
        }
        max = PyLong_AsSsize_t(a[0]);
        if (max == -1 && PyErr_Occurred())
            return NULL;
        if (max < 1) {
            PyErr_SetString(PyExc_ValueError, "'max_items' must be >= 1");
            return NULL;
        }
    }
    uint64_t cap = RING(self)->maxsize;
    if ((uint64_t)max > cap)
        max = (Py_ssize_t)cap;
    if (max > 65536)
        max = 65536;
    raw_t *xs = PyMem_Calloc((size_t)max, sizeof(raw_t));
    if (!xs)
        return PyErr_NoMemory();
    Py_ssize_t k = ring_get_raw(self, xs, max, deadline);
    if (k < 0) {
        PyMem_Free(xs);
        return NULL;
    }
    /* Every record of the batch is consumed (head is committed).  An item
     * that fails to unpickle is the caller's error, as with get(); the
     * other items of the batch are not lost: they are decoded anyway and
     * handed over on the exception, as its attribute `items` (in queue
     * order, the failed ones left out). */
    PyObject *list = PyList_New(0);
    PyObject *et = NULL, *ev = NULL, *etb = NULL;
    Py_ssize_t failed = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *o = list ? raw_finish(&xs[i]) : NULL;
        if (!list) {
            raw_clear(&xs[i]);
            continue;
        }
        if (!o) {
            if (failed++ == 0)
                PyErr_Fetch(&et, &ev, &etb);
            else
                PyErr_Clear(); /* only the first error is raised */
            continue;
        }
        if (PyList_Append(list, o) < 0)
            Py_CLEAR(list);
        Py_DECREF(o);
    }
    PyMem_Free(xs);
    if (!failed || !list) {
        if (failed) {
            Py_XDECREF(et);
            Py_XDECREF(ev);
            Py_XDECREF(etb);
        }
        return list;
    }
    PyErr_NormalizeException(&et, &ev, &etb);
    if (ev) {
        PyObject_SetAttrString(ev, "items", list);
        PyObject *note = PyUnicode_FromFormat(
            "get_many(): %zd item(s) of this batch failed to unpickle; the %zd other item(s) "
            "taken with it are in this exception's .items",
            failed, PyList_GET_SIZE(list));
        if (note && PyObject_HasAttrString(ev, "add_note")) {
            PyObject *r = PyObject_CallMethod(ev, "add_note", "O", note);
            Py_XDECREF(r);
        }
        Py_XDECREF(note);
        PyErr_Clear();
    }
    Py_DECREF(list);
    PyErr_Restore(et, ev, etb);
    return NULL;
}

/* ------------------------------------------------------------ state */

static PyObject *Ring_qsize(RingObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    il_ring_t *r = RING(self);
    /* acquire, head first: the tail we read after it is never behind it. */
    uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    return PyLong_FromUnsignedLong((uint32_t)(IL_CNT(t) - IL_CNT(h)));
}

static PyObject *Ring_empty(RingObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    il_ring_t *r = RING(self);
    uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    return PyBool_FromLong(IL_CNT(t) == IL_CNT(h));
}

static PyObject *Ring_full(RingObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    il_ring_t *r = RING(self);
    uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    uint32_t count = IL_CNT(t) - IL_CNT(h);
    uint32_t used = IL_POS(t) - IL_POS(h);
    /* Full: no room for another item, counting the smallest record (8 B:
     * a header and an empty payload). */
    return PyBool_FromLong(count >= r->maxsize || used + 8 > r->capacity);
}

static PyObject *Ring_close(RingObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    il_ring_t *r = RING(self);
    /* Under plock: every put that committed before the close is published
     * before the flag; consumers read the flag before tail (ring_get_raw). */
    int lr = ring_lock_side(self, &r->plock, IL_FOREVER);
    if (lr != 0)
        return NULL;
    IL_CRASH(RING_CLOSE_LOCKED);
    /* release: pairs with the consumers' acquire load of flags. */
    atomic_fetch_or_explicit(&r->flags, IL_RING_CLOSED, memory_order_release);
    il_mutex_unlock(&r->plock);
    /* Wake every sleeper on both sides unconditionally: they must see the close. */
    atomic_fetch_add_explicit(&r->not_empty.seq, 1, memory_order_release);
    il_futex_wake(&r->not_empty.seq, INT32_MAX);
    atomic_fetch_add_explicit(&r->not_full.seq, 1, memory_order_release);
    il_futex_wake(&r->not_full.seq, INT32_MAX);
    Py_RETURN_NONE;
}

static PyObject *Ring_get_closed(RingObject *self, void *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    /* acquire: a caller that sees closed sees the final tail too */
    return PyBool_FromLong(atomic_load_explicit(&RING(self)->flags, memory_order_acquire) &
                           IL_RING_CLOSED);
}

static PyObject *Ring_task_done(RingObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    il_ring_t *r = RING(self);
    /* relaxed first read; the CAS below is seq_cst so that the notify's fence
     * pairs with join()'s prepare. */
    uint32_t d = atomic_load_explicit(&r->done, memory_order_relaxed);
    for (;;) {
        uint32_t put = IL_CNT(atomic_load_explicit(&r->tail, memory_order_acquire));
        if (d == put) {
            PyErr_SetString(PyExc_ValueError, "task_done() called too many times");
            return NULL;
        }
        if (atomic_compare_exchange_weak_explicit(&r->done, &d, d + 1, memory_order_seq_cst,
                                                  memory_order_relaxed)) {
            if (d + 1 == put)
                il_ec_notify(&r->all_done, INT32_MAX);
            Py_RETURN_NONE;
        }
    }
}

static const char *const join_names[] = {"timeout"};

static PyObject *Ring_join(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    PyObject *a[1];
    int64_t deadline;
    if (parse_args("join", args, nargs, kwnames, join_names, 1, 0, a) < 0 ||
        parse_deadline(NULL, a[0], &deadline) < 0 || shm_check((ShmObject *)self) < 0)
        return NULL;
    il_ring_t *r = RING(self);
    while (!cond_all_done(r, 0)) {
        int w = ring_wait((ShmObject *)self, &r->all_done, cond_all_done, 0, deadline, NULL);
        if (w < 0)
            return NULL;
        if (w == IL_TIMEDOUT)
            Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

static PyObject *Ring_unfinished_tasks(RingObject *self, void *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    il_ring_t *r = RING(self);
    uint32_t d = atomic_load_explicit(&r->done, memory_order_acquire);
    uint32_t put = IL_CNT(atomic_load_explicit(&r->tail, memory_order_acquire));
    return PyLong_FromUnsignedLong(put - d);
}

static const char *const wait_names[] = {"nbytes", "timeout"};

/* _wait_readable(timeout=None) / _wait_writable(nbytes, timeout=None): block
 * (GIL released) until a get / a put of nbytes may succeed, or the queue is
 * closed; False on timeout.  Consume nothing: the asyncio layer waits with
 * these in a helper thread and does the get/put in the loop's thread, so a
 * cancelled coroutine never holds an item.
 *
 * A put notifies as many sleepers as it put records (il_ec_notify(ec, k)),
 * and a get as many as it took.  If one of those wake-ups lands here, the
 * record it announced may be taken by nobody: the coroutine may be gone
 * (cancelled, timed out) or lose the race, while a blocked get() in another
 * process sleeps on until its slice (100 ms) runs out.  So, returning after a
 * wake-up, we pass one on (the mutex's wait-only waiter does the same,
 * mutex.c il_mutex_wait_unlocked; model: eventcount.pml WATCHER).  Cost: one
 * notify per asyncio wake-up, only when someone else is counted asleep; a
 * blocked get() that then finds the record taken by the coroutine sleeps
 * again (a spurious wake, never a lost one). */
static PyObject *ring_wait_method(RingObject *self, il_eventcount_t *ec, cond_fn cond,
                                  uint64_t arg, PyObject *timeout)
{
    int64_t deadline;
    if (parse_deadline(NULL, timeout, &deadline) < 0)
        return NULL;
    il_ring_t *r = RING(self);
    while (!cond(r, arg)) {
        int woken = 0;
        int w = ring_wait((ShmObject *)self, ec, cond, arg, deadline, &woken);
        if (w < 0)
            return NULL;
        if (w == IL_TIMEDOUT)
            Py_RETURN_FALSE;
        if (woken) {
            il_ec_notify(ec, 1);
            break;
        }
    }
    Py_RETURN_TRUE;
}

static PyObject *Ring_wait_readable(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames)
{
    PyObject *a[1];
    if (parse_args("_wait_readable", args, nargs, kwnames, wait_names + 1, 1, 0, a) < 0 ||
        shm_check((ShmObject *)self) < 0)
        return NULL;
    return ring_wait_method(self, &RING(self)->not_empty, cond_not_empty, 0, a[0]);
}

static PyObject *Ring_wait_writable(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames)
{
    PyObject *a[2];
    if (parse_args("_wait_writable", args, nargs, kwnames, wait_names, 2, 1, a) < 0 ||
        shm_check((ShmObject *)self) < 0)
        return NULL;
    unsigned long long n = PyLong_AsUnsignedLongLong(a[0]);
    if (n == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    uint64_t need = IL_ALIGN8(sizeof(il_rec_t) + n);
    return ring_wait_method(self, &RING(self)->not_full, cond_room, need, a[1]);
}

static PyObject *mutex_stats_dict(il_mutex_t *m);

static PyObject *Ring_stats(RingObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    il_ring_t *r = RING(self);
    uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    PyObject *pl = mutex_stats_dict(&r->plock), *cl = mutex_stats_dict(&r->clock);
    PyObject *d = Py_BuildValue(
        "{s:K,s:K,s:K,s:I,s:I,s:I,s:O,s:O,s:N,s:N,s:I,s:I}", "size", (unsigned long long)r->size,
        "capacity", (unsigned long long)r->capacity, "maxsize", (unsigned long long)r->maxsize,
        "depth", (unsigned)(IL_CNT(t) - IL_CNT(h)), "bytes_used",
        (unsigned)(IL_POS(t) - IL_POS(h)), "put_count_mod32", (unsigned)IL_CNT(t), "closed",
        (atomic_load_explicit(&r->flags, memory_order_relaxed) & IL_RING_CLOSED) ? Py_True
                                                                                  : Py_False,
        "unused", Py_None, "producer_lock", pl, "consumer_lock", cl, "consumers_sleeping",
        atomic_load_explicit(&r->not_empty.waiters, memory_order_relaxed), "producers_sleeping",
        atomic_load_explicit(&r->not_full.waiters, memory_order_relaxed));
    if (d)
        PyDict_DelItemString(d, "unused");
    return d;
}

/* The one validator of a ring header found in a segment (attach): every
 * field that sizes a copy or bounds an index must be in range, else a
 * damaged or foreign header would make later calls read or write outside
 * the mapping.  Writes the reason to why[] and returns 1 if invalid.
 * (PyErr_Format has no '#' flag: hex is formatted here, with snprintf.) */
static int ring_header_invalid(il_ring_t *r, uint64_t mapped, char *why, size_t n)
{
    if (r->magic != IL_RING_MAGIC || r->version != IL_RING_VERSION) {
        snprintf(why, n, "ring magic 0x%08x version %u, expected 0x%08x version %u",
                 r->magic, r->version, IL_RING_MAGIC, IL_RING_VERSION);
        return 1;
    }
    if (r->size < 64 || r->size > IL_RING_MAX_SIZE || (r->size & (r->size - 1))) {
        snprintf(why, n, "ring size %llu is not a power of two in [64, 2**30]",
                 (unsigned long long)r->size);
        return 1;
    }
    if (il_ring_bytes(r->size) > mapped) {
        snprintf(why, n, "ring of %llu data bytes in a mapping of %llu bytes (truncated)",
                 (unsigned long long)r->size, (unsigned long long)mapped);
        return 1;
    }
    if (r->capacity < 16 || r->capacity > r->size) {
        snprintf(why, n, "capacity %llu out of range [16, size %llu]",
                 (unsigned long long)r->capacity, (unsigned long long)r->size);
        return 1;
    }
    if (r->maxsize == 0 || r->maxsize > 0x7fffffffULL) {
        snprintf(why, n, "maxsize %llu out of range [1, 2**31 - 1]",
                 (unsigned long long)r->maxsize);
        return 1;
    }
    /* I1 for the positions.  A live queue moves while we look: read head,
     * tail, head again, and judge only a pair taken while head stood still
     * (then tail was read when head was h, so I1 held between them); a
     * queue too busy to give one in 64 tries is alive, not damaged.
     * acquire: as qsize(); the values are checked, never trusted. */
    for (int i = 0; i < 64; i++) {
        uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
        uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (atomic_load_explicit(&r->head, memory_order_acquire) != h)
            continue;
        uint32_t used = IL_POS(t) - IL_POS(h), count = IL_CNT(t) - IL_CNT(h);
        if ((IL_POS(h) & 7u) || (IL_POS(t) & 7u) || used > r->capacity || count > r->maxsize ||
            (uint64_t)count * 8u > used) {
            snprintf(why, n,
                     "positions out of range: head %u (%u records taken), tail %u (%u put), "
                     "capacity %llu, maxsize %llu",
                     IL_POS(h), IL_CNT(h), IL_POS(t), IL_CNT(t),
                     (unsigned long long)r->capacity, (unsigned long long)r->maxsize);
            return 1;
        }
        break;
    }
    return 0;
}

static const char *const ring_init_names[] = {"buffer", "offset", "create", "size", "capacity",
                                              "maxsize"};

static int Ring_init(RingObject *self, PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"buffer", "offset", "create", "size", "capacity", "maxsize", NULL};
    PyObject *buffer;
    Py_ssize_t offset;
    int create = 0;
    unsigned long long size = 0, capacity = 0, maxsize = 0;
    (void)ring_init_names;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On|pKKK:Ring", kw, &buffer, &offset, &create,
                                     &size, &capacity, &maxsize))
        return -1;
    if (create) {
        if (size < 64 || size > IL_RING_MAX_SIZE || (size & (size - 1))) {
            PyErr_Format(PyExc_ValueError, "ring size must be a power of two in [64, 2**30], got %llu",
                         size);
            return -1;
        }
        if (capacity == 0 || capacity > size)
            capacity = size;
        if (maxsize == 0 || maxsize > 0x7fffffffULL)
            maxsize = 0x7fffffffULL;
        if (shm_attach((ShmObject *)self, buffer, offset, il_ring_bytes(size)) < 0)
            return -1;
        il_ring_init(RING(self), size, capacity, maxsize);
        return 0;
    }
    if (shm_attach((ShmObject *)self, buffer, offset, sizeof(il_ring_t)) < 0)
        return -1;
    char why[160];
    if (ring_header_invalid(RING(self), (uint64_t)(self->base.view.len - offset), why,
                            sizeof why)) {
        shm_detach((ShmObject *)self, NULL);
        PyErr_Format(PyExc_ValueError, "not a valid interlock queue: %s", why);
        return -1;
    }
    return 0;
}

static PyMethodDef Ring_methods[] = {
    /* The docstrings are the API reference (docs/api/queues.rst): "$self" in the
     * text signature so that inspect.signature() keeps the first parameter. */
    {"put", (PyCFunction)(void (*)(void))Ring_put, METH_FASTCALL | METH_KEYWORDS,
     "put($self, obj, block=True, timeout=None)\n--\n\n"
     "Put obj at the tail of the queue.\n\n"
     "bytes and bytearray go in as they are; anything else is pickled (protocol 5, "
     "out-of-band buffers such as numpy arrays copied straight into the ring). With "
     "block=True, wait for room (at most timeout seconds; None: no limit); with "
     "block=False, do not wait.\n\n"
     "Raises:\n"
     "    queue.Full: no room in time (at once with block=False).\n"
     "    QueueClosed: the queue is closed.\n"
     "    ValueError: the item can never fit (larger than the capacity), or a negative "
     "timeout.\n"
     "    TypeError: timeout is not a number; an unpicklable item's pickling error "
     "propagates as it is.\n\n"
     "If a process dies: a producer killed inside put() leaves its item wholly in the "
     "queue or not at all (published by one atomic store once written); the next "
     "producer takes the producer lock over within about 50 ms."},
    {"put_nowait", (PyCFunction)Ring_put_nowait, METH_O,
     "put_nowait($self, obj, /)\n--\n\n"
     "put(obj, block=False): raises queue.Full at once if there is no room, "
     "QueueClosed if the queue is closed."},
    {"put_many", (PyCFunction)(void (*)(void))Ring_put_many, METH_FASTCALL | METH_KEYWORDS,
     "put_many($self, items, block=True, timeout=None)\n--\n\n"
     "Put every item of an iterable, in order, under as few lock round trips as room "
     "allows.\n\n"
     "With block=False: all or nothing (queue.Full if they do not all fit now).\n\n"
     "Raises:\n"
     "    queue.Full: timed out (the items put before the timeout stay in the queue), or "
     "not all fit with block=False.\n"
     "    QueueClosed: the queue is closed.\n"
     "    ValueError: an item can never fit.\n\n"
     "If a process dies: each item is published on its own; a producer killed midway "
     "leaves a prefix of the items in the queue, each whole."},
    {"get", (PyCFunction)(void (*)(void))Ring_get, METH_FASTCALL | METH_KEYWORDS,
     "get($self, block=True, timeout=None)\n--\n\n"
     "Remove and return the oldest item.\n\n"
     "Raises:\n"
     "    queue.Empty: no item in time (at once with block=False).\n"
     "    QueueClosed: the queue is closed and every item put before the close has "
     "been taken.\n"
     "    ValueError: a negative timeout.\n"
     "    TypeError: timeout is not a number. An unpickling error propagates as it is "
     "(the item is consumed).\n\n"
     "If a process dies: a consumer killed inside get() either took the item or left "
     "it in the queue (never half); the next consumer takes the consumer lock over "
     "within about 50 ms. A sleeper whose producer died wakes within 100 ms."},
    {"get_nowait", (PyCFunction)Ring_get_nowait, METH_NOARGS,
     "get_nowait($self, /)\n--\n\n"
     "get(block=False): raises queue.Empty at once if the queue is empty, "
     "QueueClosed if it is closed and drained."},
    {"get_many", (PyCFunction)(void (*)(void))Ring_get_many, METH_FASTCALL | METH_KEYWORDS,
     "get_many($self, max_items=1024, block=True, timeout=None)\n--\n\n"
     "Wait for at least one item, then return a list of up to max_items, oldest "
     "first, taken under one lock round trip.\n\n"
     "Raises:\n"
     "    queue.Empty: no item in time.\n"
     "    QueueClosed: closed and drained.\n"
     "    ValueError: max_items < 1. If an item fails to unpickle, the error carries "
     "the batch's good items in its .items attribute.\n\n"
     "If a process dies: as for get(); a consumer killed midway has taken all of the "
     "batch or none of it."},
    {"qsize", (PyCFunction)Ring_qsize, METH_NOARGS,
     "qsize($self, /)\n--\n\nExact number of items in the queue at this instant."},
    {"empty", (PyCFunction)Ring_empty, METH_NOARGS,
     "empty($self, /)\n--\n\nqsize() == 0."},
    {"full", (PyCFunction)Ring_full, METH_NOARGS,
     "full($self, /)\n--\n\nTrue if no further item fits (count or bytes)."},
    {"_close", (PyCFunction)Ring_close, METH_NOARGS, NULL},
    {"_task_done", (PyCFunction)Ring_task_done, METH_NOARGS, NULL},
    {"_join", (PyCFunction)(void (*)(void))Ring_join, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_stats", (PyCFunction)Ring_stats, METH_NOARGS, NULL},
    {"_detach", (PyCFunction)shm_detach, METH_NOARGS, NULL},
    {"_wait_readable", (PyCFunction)(void (*)(void))Ring_wait_readable,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_wait_writable", (PyCFunction)(void (*)(void))Ring_wait_writable,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {NULL}};

static PyGetSetDef Ring_getset[] = {
    {"_closed", (getter)Ring_get_closed, NULL, NULL, NULL},
    {"_unfinished_tasks", (getter)Ring_unfinished_tasks, NULL, NULL, NULL},
    {NULL}};

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "interlock._core.Ring",
    .tp_basicsize = sizeof(RingObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Ring(buffer, offset, create=False, size=0, capacity=0, maxsize=0)\n\n"
              "The shared FIFO over a writable buffer (see ring.h). Used through "
              "interlock.Queue.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Ring_init,
    .tp_dealloc = (destructor)shm_dealloc,
    .tp_traverse = (traverseproc)shm_traverse,
    .tp_methods = Ring_methods,
    .tp_getset = Ring_getset,
};

/* ================================================================= Mutex */

typedef struct {
    ShmObject base;
    int recursive;
    char tracked; /* route acquire/release through the Python tracking layer */
    char trackable; /* the type has the tracking methods (interlock.Lock and subclasses) */
} MutexObject;

/* Lock tracking (levels, lockdep: _hierarchy.py, _lockdep.py) and runtime
 * deadlock detection (_waitfor.py) live in Python.  Off, they cost the fast
 * path one load of `tracked` and one relaxed load of `track_all`. */
static _Atomic int track_all;          /* lockdep enabled: every Lock is tracked */
static _Atomic int64_t deadlock_ns = 1000000000LL; /* 0: runtime detection off */
#define DEADLOCK_RECHECK_NS 250000000LL
static PyObject *str_tracked_acquire, *str_tracked_release, *str_tracked_enter,
    *str_on_long_wait, *str_end_long_wait;

static PyTypeObject MutexType;

static inline int is_tracked(MutexObject *self)
{
    /* relaxed: a configuration flag, set before the locks are used */
    return self->tracked || (atomic_load_explicit(&track_all, memory_order_relaxed) &&
                             self->trackable); /* internal mutexes are never tracked */
}

#define MUTEX(self) ((il_mutex_t *)((ShmObject *)(self))->p)

static PyObject *mutex_stats_dict(il_mutex_t *m)
{
    uint32_t w = atomic_load_explicit(&m->word, memory_order_relaxed);
    uint32_t owner = w & IL_MUTEX_TID_MASK;
    uint32_t pid = 0;
    /* relaxed: display only */
    if (owner && atomic_load_explicit(&m->owner_tid, memory_order_relaxed) == owner)
        pid = atomic_load_explicit(&m->owner_pid, memory_order_relaxed);
    return Py_BuildValue(
        "{s:I,s:I,s:I,s:K,s:K,s:I,s:I}", "owner_tid", owner, "owner_pid", pid, "depth",
        owner ? m->depth : 0, "acquisitions",
        (unsigned long long)atomic_load_explicit(&m->acquisitions, memory_order_relaxed),
        "contentions",
        (unsigned long long)atomic_load_explicit(&m->contentions, memory_order_relaxed),
        "owner_deaths", atomic_load_explicit(&m->owner_deaths, memory_order_relaxed), "waiters",
        atomic_load_explicit(&m->waiters, memory_order_relaxed));
}

static int Mutex_init(MutexObject *self, PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"buffer", "offset", "create", "recursive", NULL};
    PyObject *buffer;
    Py_ssize_t offset;
    int create = 0, recursive = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On|pp:Mutex", kw, &buffer, &offset, &create,
                                     &recursive))
        return -1;
    if (shm_attach((ShmObject *)self, buffer, offset, sizeof(il_mutex_t)) < 0)
        return -1;
    self->recursive = recursive;
    /* Tracking and deadlock detection need the Python layer's methods
     * (_hierarchy.TrackedLockMixin); internal mutexes do not have them. */
    self->trackable = (char)PyObject_HasAttr((PyObject *)Py_TYPE(self), str_tracked_acquire);
    if (create)
        il_mutex_init(MUTEX(self));
    return 0;
}

/* Core of acquire/__enter__.  Returns 1 taken, 0 not taken, -1 exception
 * (with `in_enter`, an exception leaves the lock released). */
static int mutex_acquire(MutexObject *self, int64_t deadline, int in_enter)
{
    if (shm_check((ShmObject *)self) < 0)
        return -1;
    il_mutex_t *m = MUTEX(self);
    uint32_t tid = il_self_tid();
    if (il_mutex_mine(m, tid)) {
        if (self->recursive) {
            m->depth++;
            return 1;
        }
        if (deadline == 0)
            return 0;
        PyErr_Format(DeadlockError,
                     "this thread already holds the lock %R: a second blocking acquire would "
                     "wait forever (use an RLock for re-entrant locking)",
                     (PyObject *)self);
        return -1;
    }
    uint32_t dead = 0;
    int counted = 0; /* one contention per acquisition, however many phases */
    int r;
    /* relaxed: configuration */
    int64_t slice = atomic_load_explicit(&deadlock_ns, memory_order_relaxed);
    if (take_fast(m)) {
        r = IL_OK;
    } else if (slice <= 0 || deadline == 0 || !self->trackable) {
        r = lock_mutex((ShmObject *)self, m, deadline, &dead, &counted);
    } else {
        /* Wait in phases: after deadlock_timeout, and then every recheck
         * interval, ask the wait-for graph whether we are in a cycle
         * (_waitfor.py); it raises DeadlockError in the one chosen victim. */
        int long_wait = 0;
        for (;;) {
            int64_t now = il_now_ns();
            int64_t phase = deadline - now > slice ? now + slice : deadline;
            r = lock_mutex((ShmObject *)self, m, phase, &dead, &counted);
            if (r != IL_TIMEDOUT || phase == deadline)
                break;
            long_wait = 1;
            PyObject *res = PyObject_CallMethodNoArgs((PyObject *)self, str_on_long_wait);
            if (!res) {
                r = -1;
                break;
            }
            Py_DECREF(res);
            slice = DEADLOCK_RECHECK_NS;
        }
        if (long_wait) {
            PyObject *t, *v, *tb;
            PyErr_Fetch(&t, &v, &tb);
            PyObject *res = PyObject_CallMethodNoArgs((PyObject *)self, str_end_long_wait);
            Py_XDECREF(res);
            if (!res)
                PyErr_Clear();
            PyErr_Restore(t, v, tb);
        }
    }
    if (r == IL_TIMEDOUT)
        return 0;
    if (r < 0)
        return -1;
    if (r == IL_DEADLK) { /* raced with our own ownership check: cannot happen */
        PyErr_SetString(PyExc_RuntimeError, "lock state is inconsistent");
        return -1;
    }
    m->depth = 1;
    if (r == IL_OWNER_DIED &&
        PyObject_HasAttr((PyObject *)self, str_on_owner_died)) { /* a bare Mutex: silent */
        PyObject *pid = PyLong_FromUnsignedLong(dead);
        PyObject *res = pid ? PyObject_CallMethodObjArgs((PyObject *)self, str_on_owner_died,
                                                         pid, NULL)
                            : NULL;
        Py_XDECREF(pid);
        if (!res) {
            if (in_enter) {
                m->depth = 0;
                il_mutex_unlock(m);
            }
            return -1;
        }
        Py_DECREF(res);
    }
    return 1;
}

static const char *const acquire_names[] = {"block", "timeout"};

static PyObject *Mutex_raw_acquire(MutexObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames);

static PyObject *Mutex_acquire(MutexObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    if (__builtin_expect(is_tracked(self), 0)) {
        PyObject *meth = PyObject_GetAttr((PyObject *)self, str_tracked_acquire);
        if (!meth)
            return NULL;
        PyObject *res = PyObject_Vectorcall(meth, args, nargs, kwnames);
        Py_DECREF(meth);
        return res;
    }
    return Mutex_raw_acquire(self, args, nargs, kwnames);
}

static PyObject *Mutex_raw_acquire(MutexObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    int64_t deadline = IL_FOREVER;
    if (nargs || kwnames) {
        PyObject *a[2];
        if (parse_args("acquire", args, nargs, kwnames, acquire_names, 2, 0, a) < 0)
            return NULL;
        int b = 1;
        if (a[0] && (b = PyObject_IsTrue(a[0])) < 0)
            return NULL;
        if (!b && a[1] && a[1] != Py_None) {
            PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
            return NULL;
        }
        if (b && a[1] && a[1] != Py_None && PyNumber_Check(a[1])) {
            double t = PyFloat_AsDouble(a[1]);
            if (t == -1.0 && !PyErr_Occurred()) {
                a[1] = Py_None; /* threading's "no timeout" */
            }
            PyErr_Clear();
        }
        if (parse_deadline(a[0], a[1], &deadline) < 0)
            return NULL;
    }
    int r = mutex_acquire(self, deadline, 0);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r);
}

static PyObject *Mutex_raw_enter(MutexObject *self, PyObject *unused)
{
    int r = mutex_acquire(self, IL_FOREVER, 1);
    if (r < 0)
        return NULL;
    Py_RETURN_TRUE;
}

static PyObject *Mutex_enter(MutexObject *self, PyObject *unused)
{
    if (__builtin_expect(is_tracked(self), 0))
        return PyObject_CallMethodNoArgs((PyObject *)self, str_tracked_enter);
    int r = mutex_acquire(self, IL_FOREVER, 1);
    if (r < 0)
        return NULL;
    Py_RETURN_TRUE;
}

static PyObject *Mutex_raw_release(MutexObject *self, PyObject *unused);

static PyObject *Mutex_release(MutexObject *self, PyObject *unused)
{
    if (__builtin_expect(is_tracked(self), 0))
        return PyObject_CallMethodNoArgs((PyObject *)self, str_tracked_release);
    return Mutex_raw_release(self, unused);
}

static PyObject *Mutex_raw_release(MutexObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    il_mutex_t *m = MUTEX(self);
    uint32_t owner = il_mutex_owner(m);
    if (!il_mutex_mine(m, il_self_tid())) {
        if (owner == 0)
            PyErr_Format(PyExc_RuntimeError, "cannot release un-acquired lock %R",
                         (PyObject *)self);
        else
            PyErr_Format(PyExc_RuntimeError,
                         "cannot release lock %R: it is held by another thread (tid %u, pid %u)",
                         (PyObject *)self, owner,
                         atomic_load_explicit(&m->owner_pid, memory_order_relaxed));
        return NULL;
    }
    if (self->recursive && m->depth > 1) {
        m->depth--;
        Py_RETURN_NONE;
    }
    m->depth = 0;
    il_mutex_unlock(m);
    Py_RETURN_NONE;
}

static PyObject *Mutex_exit(MutexObject *self, PyObject *args)
{
    return Mutex_release(self, NULL);
}

static PyObject *Mutex_is_owned(MutexObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    return PyBool_FromLong(il_mutex_mine(MUTEX(self), il_self_tid()));
}

static PyObject *Mutex_locked(MutexObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    return PyBool_FromLong(il_mutex_owner(MUTEX(self)) != 0);
}

static PyObject *Mutex_count(MutexObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    il_mutex_t *m = MUTEX(self);
    return PyLong_FromUnsignedLong(il_mutex_mine(m, il_self_tid()) ? m->depth : 0);
}

static PyObject *Mutex_stats(MutexObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    return mutex_stats_dict(MUTEX(self));
}

/* ------------------------------------------- a held lock left behind
 *
 * A process whose last handle on a lock goes away (garbage collection, exit)
 * while one of its threads holds the lock can never release it: no handle,
 * no release().  The holder is alive, so the liveness check would let the
 * others wait for good.  The lock is then handed to owner-death recovery
 * (docs/design/lock.md, "A held lock left behind"): the start time in
 * owner_hint is replaced by one that is not the holder's, so every
 * liveness check -- a waiter's after its slice, a non-blocking acquire, and
 * the holder's own next acquire ("our TID, not our hints") -- judges the
 * owner dead and takes the lock over with IL_OWNER_DIED, exactly as after a
 * death: the next owner is told, because what the lock protected may be
 * half-updated. */

/* The owner's TID if it is a thread of this process whose hint is in place
 * (it took the word and wrote who it is), else 0. */
static uint32_t mutex_holder_here(il_mutex_t *m)
{
    uint32_t tid = il_mutex_owner(m);
    if (tid == 0)
        return 0;
    if (tid == il_self_tid())
        return il_mutex_mine(m, tid) ? tid : 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%u", tid);
    if (access(path, F_OK) != 0)
        return 0; /* not one of our threads */
    uint64_t start = 0;
    if (il_task_stat(tid, &start, NULL) != 1)
        return 0;
    if (start == 0)
        start = 1; /* as il_self_start() records an unknown start time */
    /* relaxed: the hint is one atomic word; whether it names that thread is
     * all we ask (its owner wrote it in program order after the word) */
    uint64_t hint = atomic_load_explicit(&m->owner_hint, memory_order_relaxed);
    return hint == ((start & 0xffffffffu) << 32 | tid) ? tid : 0;
}

static PyObject *Mutex_held_here(MutexObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    return PyBool_FromLong(mutex_holder_here(MUTEX(self)) != 0);
}

/* _abandon(): if a thread of this process holds the lock, hand it to
 * owner-death recovery (above).  True if it did. */
static PyObject *Mutex_abandon(MutexObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    il_mutex_t *m = MUTEX(self);
    uint32_t tid = mutex_holder_here(m);
    if (tid == 0)
        Py_RETURN_FALSE;
    /* relaxed load: our own process's thread wrote it (checked above) */
    uint64_t hint = atomic_load_explicit(&m->owner_hint, memory_order_relaxed);
    uint64_t other = ((hint >> 32) + 1) & 0xffffffffu;
    if (other <= 1) /* 0 and 1 mean "start time unknown": il_task_alive would trust the TID */
        other = 2;
    /* relaxed: the hint is one atomic word, read by one load (invariant L4);
     * the TID packed with it stays the word's, so readers trust the start
     * time, and it is not the holder's: "dead" from now on. */
    atomic_store_explicit(&m->owner_hint, other << 32 | tid, memory_order_relaxed);
    /* release (a read-modify-write that changes nothing): what the holder
     * wrote under the lock, and the hint above, happen-before the acquire
     * CAS of whoever takes the lock over, which reads this value or a later
     * one of the word's release sequence (waiters only add WAITERS by RMW). */
    uint32_t v = atomic_fetch_or_explicit(&m->word, 0, memory_order_release);
    /* Blocking waiters see the owner "dead" at the end of their slice;
     * asyncio's helper (aio.c) sleeps without one: wake every sleeper, each
     * re-checks (a useless wake for the blocking ones, never a lost one). */
    if (v & IL_MUTEX_WAITERS)
        il_futex_wake(&m->word, INT32_MAX);
    Py_RETURN_TRUE;
}

/* _wait_unlocked(timeout=None): block (GIL released) until the lock is free
 * or its owner is dead; False on timeout.  Takes nothing (for asyncio). */
static PyObject *Mutex_wait_unlocked(MutexObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
    PyObject *a[1];
    int64_t deadline;
    if (parse_args("_wait_unlocked", args, nargs, kwnames, join_names, 1, 0, a) < 0 ||
        parse_deadline(NULL, a[0], &deadline) < 0 || shm_check((ShmObject *)self) < 0)
        return NULL;
    il_mutex_t *m = MUTEX(self);
    int res;
    for (;;) {
        self->base.busy++;
        Py_BEGIN_ALLOW_THREADS
        res = il_mutex_wait_unlocked(m, deadline);
        Py_END_ALLOW_THREADS
        self->base.busy--;
        if (res != IL_INTR)
            break;
        if (PyErr_CheckSignals() < 0)
            return NULL;
    }
    return PyBool_FromLong(res == IL_OK);
}

static PyMethodDef Mutex_methods[] = {
    {"_wait_unlocked", (PyCFunction)(void (*)(void))Mutex_wait_unlocked,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    /* The docstrings are the API reference (docs/api/locks.rst). */
    {"acquire", (PyCFunction)(void (*)(void))Mutex_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire($self, block=True, timeout=None)\n--\n\n"
     "Take the lock; return True if taken, False if not (timeout, or block=False and "
     "held by a living owner).\n\n"
     "Raises:\n"
     "    DeadlockError: a Lock (not an RLock) already held by the calling thread, "
     "with block=True; or, with deadlock detection, this thread was chosen to break a "
     "cycle of waiters.\n"
     "    OwnerDiedError: on_owner_death=\"raise\" and the previous owner died holding "
     "the lock: the caller *holds* the lock when this is raised.\n"
     "    LockOrderError: the lock's level is against the levels of the locks held.\n"
     "    ValueError: a timeout with block=False, or a negative timeout.\n\n"
     "If a process dies: if the owner (process or thread) died holding the lock, "
     "acquire() takes it over within about 50 ms (at once with block=False) and issues "
     "OwnerDiedWarning (or raises OwnerDiedError, or nothing: on_owner_death). What "
     "the dead owner was updating may be half done."},
    {"release", (PyCFunction)Mutex_release, METH_NOARGS,
     "release($self, /)\n--\n\n"
     "Release the lock (an RLock: one level of it).\n\n"
     "Raises:\n"
     "    RuntimeError: the calling thread does not hold the lock (only its owner may "
     "release it).\n\n"
     "If a process dies: a process that dies before release() leaves the lock to be "
     "taken over by the next acquire(), as above."},
    {"__enter__", (PyCFunction)Mutex_enter, METH_NOARGS, NULL},
    {"_raw_acquire", (PyCFunction)(void (*)(void))Mutex_raw_acquire,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_raw_enter", (PyCFunction)Mutex_raw_enter, METH_NOARGS, NULL},
    {"_raw_release", (PyCFunction)Mutex_raw_release, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Mutex_exit, METH_VARARGS, NULL},
    {"locked", (PyCFunction)Mutex_locked, METH_NOARGS,
     "locked($self, /)\n--\n\nTrue if some thread holds the lock (a dead owner "
     "counts until the lock is taken over)."},
    {"_is_owned", (PyCFunction)Mutex_is_owned, METH_NOARGS, NULL},
    {"_count", (PyCFunction)Mutex_count, METH_NOARGS, NULL},
    {"_stats", (PyCFunction)Mutex_stats, METH_NOARGS, NULL},
    {"_detach", (PyCFunction)shm_detach, METH_NOARGS, NULL},
    {"_held_here", (PyCFunction)Mutex_held_here, METH_NOARGS,
     "_held_here()\n--\n\nTrue if a thread of this process holds the lock."},
    {"_abandon", (PyCFunction)Mutex_abandon, METH_NOARGS,
     "_abandon()\n--\n\nIf a thread of this process holds the lock, hand it to owner-death "
     "recovery (the next acquirer takes it over and is told); True if it did."},
    {NULL}};

static PyMemberDef Mutex_members[] = {
    {"_tracked", T_BOOL, offsetof(MutexObject, tracked), 0,
     "route acquire/release through the Python tracking layer"},
    {NULL}};

static PyTypeObject MutexType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "interlock._core.Mutex",
    .tp_basicsize = sizeof(MutexObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Mutex(buffer, offset, create=False, recursive=False)\n\n"
              "A robust process-shared mutex over a writable buffer (see mutex.h). Used "
              "through interlock.Lock and interlock.RLock.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Mutex_init,
    .tp_dealloc = (destructor)shm_dealloc,
    .tp_traverse = (traverseproc)shm_traverse,
    .tp_methods = Mutex_methods,
    .tp_members = Mutex_members,
};

/* For aio.c, which must know what an object is (the types are static here). */
int il_py_is_ring(PyObject *o) { return PyObject_TypeCheck(o, &RingType); }
int il_py_is_mutex(PyObject *o) { return PyObject_TypeCheck(o, &MutexType); }

/* ================================================================= module */

static PyObject *mod_configure(PyObject *mod, PyObject *args)
{
    PyObject *e, *f, *c, *d;
    if (!PyArg_ParseTuple(args, "OOOO:configure", &e, &f, &c, &d))
        return NULL;
    Py_XSETREF(Empty, Py_NewRef(e));
    Py_XSETREF(Full, Py_NewRef(f));
    Py_XSETREF(QueueClosed, Py_NewRef(c));
    Py_XSETREF(DeadlockError, Py_NewRef(d));
    Py_RETURN_NONE;
}

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

static PyObject *mod_set_tracking(PyObject *m, PyObject *args)
{
    int all;
    double dl;
    if (!PyArg_ParseTuple(args, "pd:_set_tracking", &all, &dl))
        return NULL;
    /* relaxed: configuration flags (is_tracked) */
    atomic_store_explicit(&track_all, all, memory_order_relaxed);
    atomic_store_explicit(&deadlock_ns, dl > 0 ? (int64_t)(dl * 1e9) : 0, memory_order_relaxed);
    Py_RETURN_NONE;
}

static PyMethodDef mod_methods[] = {
    {"_set_tracking", mod_set_tracking, METH_VARARGS,
     "_set_tracking(track_all_locks, deadlock_timeout_s): lockdep on/off; runtime "
     "detection after this many seconds of waiting (0 = off)."},
    {"crash_points", mod_crash_points, METH_NOARGS,
     "crash_points(): [(name, what is held there)] of the C core's crash points."},
    {"_crash_arm", mod_crash_arm, METH_VARARGS,
     "_crash_arm(name, nth=1): _exit(77) the nth time this process reaches the point "
     "(None disarms). For tests only."},
    {"configure", mod_configure, METH_VARARGS, "configure(Empty, Full, QueueClosed, DeadlockError)"},
    {"self_tid", mod_self_tid, METH_NOARGS, "The calling thread's TID."},
    {"self_start", mod_self_start, METH_NOARGS, "The calling thread's start time (clock ticks)."},
    {"self_pid", mod_self_pid, METH_NOARGS, "The calling process's pid (cached; reset at fork)."},
    {"ncpus", mod_ncpus, METH_NOARGS, "CPUs this process may run on."},
    {"task_alive", mod_task_alive, METH_VARARGS,
     "task_alive(tid, start=0): is this thread/process alive (zombies are dead)?"},
    {"task_start", mod_task_start, METH_VARARGS,
     "task_start(tid): start time in clock ticks, or None if no such task."},
    {"ring_bytes", mod_ring_bytes, METH_O, "ring_bytes(size): bytes a ring of this size needs."},
    {NULL}};

static struct PyModuleDef coremodule = {PyModuleDef_HEAD_INIT, "interlock._core",
                                        "interlock's C core: robust mutex and shared ring.", -1,
                                        mod_methods};

PyMODINIT_FUNC PyInit__core(void)
{
    if (PyType_Ready(&RingType) < 0 || PyType_Ready(&MutexType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&coremodule);
    if (!m)
        return NULL;
    PyObject *pickle = PyImport_ImportModule("pickle");
    if (!pickle)
        return NULL;
    pickle_dumps = PyObject_GetAttrString(pickle, "dumps");
    pickle_loads = PyObject_GetAttrString(pickle, "loads");
    Py_DECREF(pickle);
    if (!pickle_dumps || !pickle_loads)
        return NULL;
    kw_buffer_callback = Py_BuildValue("(s)", "buffer_callback");
    kw_buffers = Py_BuildValue("(s)", "buffers");
    protocol5 = PyLong_FromLong(5);
    str_on_owner_died = PyUnicode_InternFromString("_on_owner_died");
    str_note_role = PyUnicode_InternFromString("_note_role");
    str_tracked_acquire = PyUnicode_InternFromString("_tracked_acquire");
    str_tracked_release = PyUnicode_InternFromString("_tracked_release");
    str_tracked_enter = PyUnicode_InternFromString("_tracked_enter");
    str_on_long_wait = PyUnicode_InternFromString("_on_long_wait");
    str_end_long_wait = PyUnicode_InternFromString("_end_long_wait");
    Empty = Py_NewRef(PyExc_Exception);
    Full = Py_NewRef(PyExc_Exception);
    QueueClosed = Py_NewRef(PyExc_Exception);
    DeadlockError = Py_NewRef(PyExc_RuntimeError);
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
    Py_INCREF(&RingType);
    Py_INCREF(&MutexType);
    if (PyModule_AddObject(m, "Ring", (PyObject *)&RingType) < 0 ||
        PyModule_AddObject(m, "Mutex", (PyObject *)&MutexType) < 0 ||
        PyModule_AddIntConstant(m, "MUTEX_SIZE", sizeof(il_mutex_t)) < 0 ||
        PyModule_AddIntConstant(m, "RING_HEADER_SIZE", sizeof(il_ring_t)) < 0 ||
        PyModule_AddIntConstant(m, "RING_MAX_SIZE", IL_RING_MAX_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "CACHELINE", IL_CACHELINE) < 0 ||
        PyModule_AddIntConstant(m, "CRASH_EXIT", IL_CRASH_EXIT) < 0 ||
        PyModule_AddIntConstant(m, "CRASHPOINTS", IL_CRASHPOINTS_BUILD) < 0)
        return NULL;
    if (il_sync_register(m) < 0 || il_mapping_register(m) < 0 ||
        il_aio_register(m) < 0)
        return NULL;
    return m;
}
