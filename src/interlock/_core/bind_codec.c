/* bind_codec.c -- the message codec (what and why: bind_codec.h). */
#include "bind_codec.h"

static PyObject *pickle_dumps, *pickle_loads;
static PyObject *kw_buffer_callback, *kw_buffers, *protocol5;

void il_msg_release(msg_t *m)
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
            il_msg_release(m);
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
int il_msg_prepare(il_ring_t *r, PyObject *obj, msg_t *m)
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
            il_msg_release(m);
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
        il_msg_release(m);
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
uint32_t il_msg_write(il_ring_t *r, uint32_t pos, msg_t *m)
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

void il_raw_clear(raw_t *x)
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
uint64_t il_raw_read(il_ring_t *r, uint32_t pos, uint32_t avail, raw_t *x)
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
PyObject *il_raw_finish(raw_t *x)
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
            il_raw_clear(x);
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
    il_raw_clear(x);
    return res;
}

int il_codec_init(void)
{
    PyObject *pickle = PyImport_ImportModule("pickle");
    if (!pickle)
        return -1;
    pickle_dumps = PyObject_GetAttrString(pickle, "dumps");
    pickle_loads = PyObject_GetAttrString(pickle, "loads");
    Py_DECREF(pickle);
    kw_buffer_callback = Py_BuildValue("(s)", "buffer_callback");
    kw_buffers = Py_BuildValue("(s)", "buffers");
    protocol5 = PyLong_FromLong(5);
    if (!pickle_dumps || !pickle_loads || !kw_buffer_callback || !kw_buffers || !protocol5)
        return -1;
    return 0;
}
