/* bind_pack.c -- packed items (what, why and the layout: bind_pack.h). */
#include "bind_pack.h"

#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------ the size pass
 *
 * Decides packability and the exact size in one walk; the write pass then
 * cannot fail.  Nothing between the two passes can change the object: both
 * run under the GIL and neither calls Python code (exact built-in types
 * only; PyLong_AsLongLongAndOverflow on an exact int calls no __index__,
 * PyDict_Next no __eq__ or __hash__). */

/* The lists and dicts met so far: an open-addressing set of pointers, at
 * most half full (IL_PACK_MAX_MUTABLE of IL_PACK_SEEN_SLOTS). */
#define IL_PACK_SEEN_SLOTS (2 * IL_PACK_MAX_MUTABLE)
_Static_assert(IL_PACK_SEEN_SLOTS == 256, "seen_before's hash keeps 8 bits");
typedef struct {
    Py_ssize_t size, limit;
    int nseen;
    PyObject *seen[IL_PACK_SEEN_SLOTS];
} sizer_t;

/* 1: o was met before (or the set is full); 0: added. */
static int seen_before(sizer_t *s, PyObject *o)
{
    if (s->nseen == IL_PACK_MAX_MUTABLE)
        return 1;
    if (s->nseen == 0) /* most items (a tuple of scalars) never get here */
        memset(s->seen, 0, sizeof s->seen);
    /* objects are 16-aligned: drop those bits, then Fibonacci hashing */
    size_t h = (size_t)(((uintptr_t)o >> 4) * UINT64_C(0x9E3779B97F4A7C15) >> 56);
    for (;; h = (h + 1) & (IL_PACK_SEEN_SLOTS - 1)) {
        if (s->seen[h] == o)
            return 1;
        if (!s->seen[h]) {
            s->seen[h] = o;
            s->nseen++;
            return 0;
        }
    }
}

static int int_width(PyObject *o, long long *v)
{
    int overflow;
    *v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow)
        return 0;
    return *v >= INT32_MIN && *v <= INT32_MAX ? 4 : 8;
}

/* 0: counted; -1: not packable (no exception set). */
static int size_of(sizer_t *s, PyObject *o, int depth)
{
    PyTypeObject *t = Py_TYPE(o);
    Py_ssize_t add;
    if (o == Py_None || o == Py_True || o == Py_False) {
        add = 1;
    } else if (t == &PyLong_Type) {
        long long v;
        int w = int_width(o, &v);
        if (!w)
            return -1; /* beyond 64 bits: pickled */
        add = 1 + w;
    } else if (t == &PyFloat_Type) {
        add = 9;
    } else if (t == &PyUnicode_Type) {
#if PY_VERSION_HEX < 0x030C0000
        if (PyUnicode_READY(o) < 0) { /* a legacy string that cannot be made ready */
            PyErr_Clear();
            return -1;
        }
#endif
        add = 6 + PyUnicode_GET_LENGTH(o) * (Py_ssize_t)PyUnicode_KIND(o);
    } else if (t == &PyBytes_Type) {
        add = 5 + PyBytes_GET_SIZE(o);
    } else if (t == &PyTuple_Type || t == &PyList_Type || t == &PyDict_Type) {
        if (depth >= IL_PACK_MAX_DEPTH)
            return -1;
        if (t != &PyTuple_Type) {
            /* a list or dict met twice (shared, or containing itself): only
             * pickle keeps the sharing */
            if (seen_before(s, o))
                return -1;
        }
        s->size += 5;
        if (s->size > s->limit)
            return -1;
        if (t == &PyDict_Type) {
            Py_ssize_t pos = 0;
            PyObject *k, *v;
            while (PyDict_Next(o, &pos, &k, &v))
                if (size_of(s, k, depth + 1) < 0 || size_of(s, v, depth + 1) < 0)
                    return -1;
            return 0;
        }
        Py_ssize_t n = Py_SIZE(o);
        PyObject **items = t == &PyTuple_Type ? ((PyTupleObject *)o)->ob_item : ((PyListObject *)o)->ob_item;
        for (Py_ssize_t i = 0; i < n; i++)
            if (size_of(s, items[i], depth + 1) < 0)
                return -1;
        return 0;
    } else {
        return -1;
    }
    s->size += add;
    return s->size > s->limit ? -1 : 0;
}

Py_ssize_t il_pack_size(PyObject *obj, Py_ssize_t limit)
{
    sizer_t s;
    s.size = 0;
    s.limit = limit < IL_PACK_MAX_BYTES ? limit : IL_PACK_MAX_BYTES;
    s.nseen = 0; /* (the set is cleared at the first list or dict) */
    if (size_of(&s, obj, 0) < 0)
        return 0;
    return s.size;
}

/* ----------------------------------------------------------- the write pass */

static inline char *put_u32(char *p, uint32_t v)
{
    memcpy(p, &v, 4);
    return p + 4;
}

static char *write_val(PyObject *o, char *p)
{
    PyTypeObject *t = Py_TYPE(o);
    if (o == Py_None) {
        *p++ = 'N';
    } else if (o == Py_True) {
        *p++ = 'T';
    } else if (o == Py_False) {
        *p++ = 'F';
    } else if (t == &PyLong_Type) {
        long long v;
        if (int_width(o, &v) == 4) {
            int32_t v32 = (int32_t)v;
            *p++ = 'i';
            memcpy(p, &v32, 4);
            p += 4;
        } else {
            int64_t v64 = v;
            *p++ = 'q';
            memcpy(p, &v64, 8);
            p += 8;
        }
    } else if (t == &PyFloat_Type) {
        double d = PyFloat_AS_DOUBLE(o);
        *p++ = 'd';
        memcpy(p, &d, 8);
        p += 8;
    } else if (t == &PyUnicode_Type) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(o);
        int k = (int)PyUnicode_KIND(o);
        *p++ = 's';
        *p++ = (char)k;
        p = put_u32(p, (uint32_t)n);
        memcpy(p, PyUnicode_DATA(o), (size_t)(n * k));
        p += n * k;
    } else if (t == &PyBytes_Type) {
        Py_ssize_t n = PyBytes_GET_SIZE(o);
        *p++ = 'b';
        p = put_u32(p, (uint32_t)n);
        memcpy(p, PyBytes_AS_STRING(o), (size_t)n);
        p += n;
    } else if (t == &PyDict_Type) {
        *p++ = 'm';
        p = put_u32(p, (uint32_t)PyDict_GET_SIZE(o));
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(o, &pos, &k, &v)) {
            p = write_val(k, p);
            p = write_val(v, p);
        }
    } else { /* tuple or list (the size pass let nothing else through) */
        Py_ssize_t n = Py_SIZE(o);
        PyObject **items = t == &PyTuple_Type ? ((PyTupleObject *)o)->ob_item : ((PyListObject *)o)->ob_item;
        *p++ = t == &PyTuple_Type ? 't' : 'l';
        p = put_u32(p, (uint32_t)n);
        for (Py_ssize_t i = 0; i < n; i++)
            p = write_val(items[i], p);
    }
    return p;
}

void il_pack_write(PyObject *obj, char *out)
{
    write_val(obj, out);
}

/* ------------------------------------------------------------------ reading */

/* Dict keys that are short 1-byte strings are rebuilt once per item and
 * shared, as pickle's memo shares them: a list of records ({"id": ..,
 * "name": ..} twenty times) makes two key strings, not forty, and each is
 * hashed once.  (Sharing an immutable str is invisible but to `is`.) */
#define IL_PACK_KEYS 16
#define IL_PACK_KEY_MAX 64

typedef struct {
    const unsigned char *p, *end;
    int nkeys;
    struct {
        const unsigned char *src; /* its code points in the record */
        uint32_t n;
        PyObject *s;              /* a reference */
    } keys[IL_PACK_KEYS];
} reader_t;

static PyObject *corrupt(const reader_t *r, const char *what)
{
    PyErr_Format(PyExc_RuntimeError,
                 "interlock queue is corrupt: packed item %s, %zd byte(s) before its end "
                 "(was the segment written by something else?)",
                 what, (Py_ssize_t)(r->end - r->p));
    return NULL;
}

static inline int have(const reader_t *r, size_t n)
{
    return (size_t)(r->end - r->p) >= n;
}

/* A fixed-width field (unaligned): 1, or 0 if the record ends first. */
static inline int take(reader_t *r, void *dst, size_t n)
{
    if (!have(r, n))
        return 0;
    memcpy(dst, r->p, n);
    r->p += n;
    return 1;
}

static inline uint32_t get_u32(reader_t *r)
{
    uint32_t v;
    memcpy(&v, r->p, 4);
    r->p += 4;
    return v;
}

static PyObject *read_str(reader_t *r)
{
    if (!have(r, 5))
        return corrupt(r, "ends inside a str header");
    int k = r->p[0];
    r->p++;
    uint32_t n = get_u32(r);
    if (k != 1 && k != 2 && k != 4)
        return corrupt(r, "has a str of an unknown width");
    if ((size_t)n > (size_t)(r->end - r->p) / (size_t)k)
        return corrupt(r, "has a str longer than the record");
    const unsigned char *src = r->p;
    r->p += (size_t)n * (size_t)k;
    if (k == 1)
        return PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, src, n);
    /* 2 or 4 bytes per code point: read through an aligned copy */
    void *buf = PyMem_Malloc((size_t)n * (size_t)k + 1);
    if (!buf)
        return PyErr_NoMemory();
    memcpy(buf, src, (size_t)n * (size_t)k);
    if (k == 4) {
        const Py_UCS4 *u = buf;
        for (uint32_t i = 0; i < n; i++)
            if (u[i] > 0x10FFFF) {
                PyMem_Free(buf);
                return corrupt(r, "has a code point beyond U+10FFFF");
            }
    }
    PyObject *s = PyUnicode_FromKindAndData(k == 2 ? PyUnicode_2BYTE_KIND : PyUnicode_4BYTE_KIND,
                                            buf, n);
    PyMem_Free(buf);
    return s;
}

static PyObject *read_val(reader_t *r, int depth);

static PyObject *read_key(reader_t *r, int depth)
{
    uint32_t n;
    if (!have(r, 6) || r->p[0] != 's' || r->p[1] != 1)
        return read_val(r, depth);
    memcpy(&n, r->p + 2, 4);
    if (n > IL_PACK_KEY_MAX || !have(r, 6 + (size_t)n))
        return read_val(r, depth);
    const unsigned char *src = r->p + 6;
    for (int i = 0; i < r->nkeys; i++)
        if (r->keys[i].n == n && memcmp(r->keys[i].src, src, n) == 0) {
            r->p = src + n;
            Py_INCREF(r->keys[i].s);
            return r->keys[i].s;
        }
    PyObject *k = read_val(r, depth);
    if (k && r->nkeys < IL_PACK_KEYS) {
        r->keys[r->nkeys].src = src;
        r->keys[r->nkeys].n = n;
        r->keys[r->nkeys].s = k;
        Py_INCREF(k);
        r->nkeys++;
    }
    return k;
}

static PyObject *read_val(reader_t *r, int depth)
{
    if (!have(r, 1))
        return corrupt(r, "ends early");
    unsigned char tag = *r->p++;
    switch (tag) {
    case 'N':
        Py_RETURN_NONE;
    case 'T':
        Py_RETURN_TRUE;
    case 'F':
        Py_RETURN_FALSE;
    case 'i': {
        int32_t v;
        return take(r, &v, 4) ? PyLong_FromLong(v) : corrupt(r, "ends inside an int");
    }
    case 'q': {
        int64_t v;
        return take(r, &v, 8) ? PyLong_FromLongLong(v) : corrupt(r, "ends inside an int");
    }
    case 'd': {
        double d;
        return take(r, &d, 8) ? PyFloat_FromDouble(d) : corrupt(r, "ends inside a float");
    }
    case 's':
        return read_str(r);
    case 'b': {
        if (!have(r, 4))
            return corrupt(r, "ends inside a bytes header");
        uint32_t n = get_u32(r);
        if (!have(r, n))
            return corrupt(r, "has a bytes longer than the record");
        PyObject *b = PyBytes_FromStringAndSize((const char *)r->p, n);
        r->p += n;
        return b;
    }
    case 't':
    case 'l':
    case 'm': {
        if (depth >= IL_PACK_MAX_DEPTH)
            return corrupt(r, "is nested too deep");
        if (!have(r, 4))
            return corrupt(r, "ends inside a container header");
        uint32_t n = get_u32(r);
        /* every value takes at least one byte: a count the rest of the
         * record cannot hold is damage (and no huge allocation is made) */
        if ((uint64_t)n * (tag == 'm' ? 2u : 1u) > (uint64_t)(r->end - r->p))
            return corrupt(r, "has a container longer than the record");
        if (tag == 'm') {
            PyObject *d = PyDict_New();
            if (!d)
                return NULL;
            for (uint32_t i = 0; i < n; i++) {
                PyObject *k = read_key(r, depth + 1);
                PyObject *v = k ? read_val(r, depth + 1) : NULL;
                if (!v) {
                    Py_XDECREF(k);
                    Py_DECREF(d);
                    return NULL;
                }
                /* only hashable keys were written: any other is damage */
                PyTypeObject *kt = Py_TYPE(k);
                int rc = kt == &PyList_Type || kt == &PyDict_Type ? -2 : PyDict_SetItem(d, k, v);
                Py_DECREF(k);
                Py_DECREF(v);
                if (rc < 0) {
                    Py_DECREF(d);
                    if (rc == -1 && !PyErr_ExceptionMatches(PyExc_TypeError))
                        return NULL;
                    PyErr_Clear();
                    return corrupt(r, "has an unhashable dict key");
                }
            }
            return d;
        }
        PyObject *c = tag == 't' ? PyTuple_New(n) : PyList_New(n);
        if (!c)
            return NULL;
        for (uint32_t i = 0; i < n; i++) {
            PyObject *v = read_val(r, depth + 1);
            if (!v) {
                Py_DECREF(c); /* (tuple and list deallocs skip the NULL slots) */
                return NULL;
            }
            if (tag == 't')
                PyTuple_SET_ITEM(c, i, v);
            else
                PyList_SET_ITEM(c, i, v);
        }
        return c;
    }
    default:
        r->p--;
        return corrupt(r, "has an unknown tag");
    }
}

PyObject *il_unpack(const char *data, Py_ssize_t len)
{
    reader_t r;
    r.p = (const unsigned char *)data;
    r.end = r.p + len;
    r.nkeys = 0;
    PyObject *o = read_val(&r, 0);
    for (int i = 0; i < r.nkeys; i++)
        Py_DECREF(r.keys[i].s);
    if (o && r.p != r.end) {
        Py_DECREF(o);
        return corrupt(&r, "has bytes after its value");
    }
    return o;
}
