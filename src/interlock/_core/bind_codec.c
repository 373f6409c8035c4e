/* bind_codec.c -- the message codec (what and why: bind_codec.h; spill
 * files: docs/design/spill.md). */
#define _GNU_SOURCE
#include "bind_codec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bind_pack.h"
#include "crashpoint.h"
#include "spillpool.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

extern PyTypeObject il_MappingType; /* bind_mapping.c */

static PyObject *pickle_dumps, *pickle_loads;
static PyObject *kw_buffer_callback, *kw_buffers, *protocol5;

#define IL_ALIGN64(n) (((n) + 63u) & ~(uint64_t)63u)

/* Where a spill file's buffer goes (spill.md, "File names and layout").
 * A copy whose destination lies a little ahead of its source modulo the
 * page size runs at a third of the speed on some CPUs (AMD Zen 3, glibc
 * 2.36: 256 MiB at 3.2 GB/s with the destination 48 bytes ahead, 9.2 GB/s at
 * the same page offset; a pooled put of a 256 MiB array took 87 ms against
 * 28 ms for one memcpy).  So a buffer of at least IL_SPILL_PHASE_MIN bytes
 * whose address is 16-aligned (the most any dtype asks: the receiver's
 * array stays aligned) goes at the next offset with the same page offset
 * as its source: its table entry carries that page offset + 1 ("phase") in
 * its top bits.  Phase 0: the next 64-aligned offset (smaller or less
 * aligned buffers, loans, files of a version-4 writer). */
#define IL_SPILL_PHASE_SHIFT 51
#define IL_SPILL_LEN_MASK ((UINT64_C(1) << IL_SPILL_PHASE_SHIFT) - 1u)
#define IL_SPILL_PHASE_MIN (UINT64_C(64) << 10)

static inline uint64_t spill_phase(const void *src, uint64_t len)
{
    uintptr_t a = (uintptr_t)src;
    return len >= IL_SPILL_PHASE_MIN && a % 16u == 0 ? (uint64_t)(a & 4095u) + 1u : 0u;
}

/* The buffer's offset: the first at or after `off` that its phase allows. */
static inline uint64_t spill_buf_off(uint64_t off, uint64_t phase)
{
    if (!phase)
        return IL_ALIGN64(off);
    uint64_t at = (off & ~UINT64_C(4095)) + (phase - 1u);
    return at >= off ? at : at + 4096u;
}

/* Buffer i's table entry in the file: its length, its phase on top. */
static inline uint64_t spill_entry(const msg_t *m, int i)
{
    return m->lens[i] | spill_phase(m->views[i].buf, m->lens[i]) << IL_SPILL_PHASE_SHIFT;
}

/* The pickled item's sources (the pickle stream, the out-of-band buffers'
 * views): not needed once they are copied into a spill file. */
static inline __attribute__((always_inline)) void msg_release_sources(msg_t *m)
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

void il_msg_release(msg_t *m)
{
    if (m->loan) {
        il_loan_t *ln = il_loan_of(m->loan);
        if (!m->published) {
            /* the put failed: the loan is the user's again (its new file
             * unnamed, its descriptor the loan's), to be put again */
            atomic_store_explicit(&ln->state, IL_LOAN_OPEN, memory_order_relaxed);
            m->pooled = 0;
            m->spill_fd = -1;
        }
        Py_CLEAR(m->loan);
    }
    msg_release_sources(m);
    if (m->pooled && !m->published) {
        /* the put failed: a new file is unmapped (unnamed, it goes), a
         * reused one is FREE again */
        il_pool_abort(&m->pool_claim);
        m->pooled = 0;
    }
    if (m->spill_fd >= 0) {
        /* never named (the put failed or was refused): the unnamed file
         * goes with its last descriptor */
        close(m->spill_fd);
        m->spill_fd = -1;
    }
}

/* The pickle stream of the last numpy array pickled, kept to be sent again
 * for the next array of the same kind (docs/design/queue.md, "numpy
 * arrays").  An exact numpy.ndarray, C-contiguous, pickled with protocol 5
 * and a buffer_callback, becomes a stream that names numpy's rebuilding
 * function, then one out-of-band buffer (its data), then the dtype, the
 * shape and the order: the stream is a function of the type, the dtype,
 * the shape, the order and whether the buffer is read-only, never of the
 * data.  So the stream pickle.dumps made for one array (checked: exactly
 * one out-of-band buffer, the array's whole data) is the stream of every
 * later array that matches it in all of those; such an array is sent with
 * that stream and a view of its data, without calling pickle (3.7 us per
 * 1 MiB array here; the receiver's pickle.loads is unchanged).
 *
 * What keeps it exact: the type must be numpy.ndarray itself, a static
 * type (no subclass: a Python class's __reduce_ex__ can be changed at any
 * time); copyreg.dispatch_table must have no entry for it (pickle.dumps
 * would call that instead); the dtype is compared by identity (the cache
 * holds a reference, so the object cannot be freed and its address
 * reused) together with the buffer's format string (a structured dtype's
 * field names, the one thing of a dtype that can be changed in place, are
 * part of it).  One entry, per process, under the GIL. */
#define ND_MAX_DIMS 8
static struct {
    PyTypeObject *type; /* strong */
    PyObject *dtype;    /* strong */
    PyObject *stream;   /* bytes, strong */
    int ndim, readonly;
    Py_ssize_t shape[ND_MAX_DIMS];
    char format[32];
} nd_cache;
static PyObject *copyreg_dispatch, *str_dtype;
static unsigned long long nd_reused, nd_pickled; /* _core._nd_streams() */

PyObject *il_codec_nd_streams(PyObject *mod, PyObject *noargs)
{
    (void)mod;
    (void)noargs;
    return Py_BuildValue("(KK)", nd_reused, nd_pickled);
}

/* obj's buffer and dtype, if obj is an exact C-contiguous numpy.ndarray
 * (by name: numpy need not be imported here).  1 (v and *dtype set: the
 * caller releases both), 0 (not one), -1 with an exception. */
static int nd_view(PyObject *obj, Py_buffer *v, PyObject **dtype)
{
    PyTypeObject *t = Py_TYPE(obj);
    if (t != nd_cache.type &&
        ((t->tp_flags & Py_TPFLAGS_HEAPTYPE) || strcmp(t->tp_name, "numpy.ndarray") != 0))
        return 0;
    if (!t->tp_as_buffer || !t->tp_as_buffer->bf_getbuffer)
        return 0;
    if (copyreg_dispatch && PyDict_Check(copyreg_dispatch)) {
        PyObject *r = PyDict_GetItemWithError(copyreg_dispatch, (PyObject *)t);
        if (r)
            return 0;
        if (PyErr_Occurred())
            return -1;
    }
    if (PyObject_GetBuffer(obj, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear(); /* not C-contiguous, or no buffer for this dtype */
        return 0;
    }
    if (v->ndim > ND_MAX_DIMS || !v->format || strlen(v->format) >= sizeof nd_cache.format) {
        PyBuffer_Release(v);
        return 0;
    }
    *dtype = PyObject_GetAttr(obj, str_dtype);
    if (!*dtype) {
        PyBuffer_Release(v);
        return -1;
    }
    return 1;
}

static int nd_matches(PyObject *obj, const Py_buffer *v, PyObject *dtype)
{
    if (Py_TYPE(obj) != nd_cache.type || dtype != nd_cache.dtype || v->ndim != nd_cache.ndim ||
        v->readonly != nd_cache.readonly || strcmp(v->format, nd_cache.format) != 0)
        return 0;
    for (int i = 0; i < v->ndim; i++)
        if (v->shape[i] != nd_cache.shape[i])
            return 0;
    return 1;
}

static void nd_remember(PyObject *obj, const Py_buffer *v, PyObject *dtype, PyObject *stream)
{
    Py_INCREF(Py_TYPE(obj));
    Py_INCREF(dtype);
    Py_INCREF(stream);
    PyTypeObject *ot = nd_cache.type;
    PyObject *od = nd_cache.dtype, *os = nd_cache.stream;
    nd_cache.type = Py_TYPE(obj);
    nd_cache.dtype = dtype;
    nd_cache.stream = stream;
    nd_cache.ndim = v->ndim;
    nd_cache.readonly = v->readonly;
    for (int i = 0; i < v->ndim; i++)
        nd_cache.shape[i] = v->shape[i];
    snprintf(nd_cache.format, sizeof nd_cache.format, "%s", v->format);
    Py_XDECREF(ot); /* (last: a dtype's dealloc may run Python code) */
    Py_XDECREF(od);
    Py_XDECREF(os);
}

/* pickle.dumps(obj, protocol=5[, buffer_callback]) into m.  Returns 0, or
 * -1 with an exception. */
static int msg_pickle_dumps(PyObject *obj, msg_t *m, int allow_oob)
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
            return msg_pickle_dumps(obj, m, 0);
        }
        m->nviews = (int)i + 1;
        m->lens[i] = (uint64_t)m->views[i].len;
    }
    m->rec.nbufs = (uint16_t)nb;
    return 0;
}

/* Pickle `obj` with protocol 5; out-of-band buffers go to m->views.
 * Returns 0, or -1 with an exception. */
static int msg_pickle(PyObject *obj, msg_t *m, int allow_oob)
{
    Py_buffer ndv;
    PyObject *nd_dtype = NULL;
    int nd = allow_oob ? nd_view(obj, &ndv, &nd_dtype) : 0;
    if (nd < 0)
        return -1;
    if (nd && nd_matches(obj, &ndv, nd_dtype)) {
        /* the stream of the last array of this kind; the data by view */
        Py_DECREF(nd_dtype);
        Py_INCREF(nd_cache.stream);
        m->owner = nd_cache.stream;
        m->data = PyBytes_AS_STRING(nd_cache.stream);
        m->dlen = PyBytes_GET_SIZE(nd_cache.stream);
        m->views = m->inline_views;
        m->lens = m->inline_lens;
        m->views[0] = ndv;
        m->nviews = 1;
        m->lens[0] = (uint64_t)ndv.len;
        m->rec.nbufs = 1;
        nd_reused++;
        return 0;
    }
    int rc = msg_pickle_dumps(obj, m, allow_oob);
    if (nd) {
        nd_pickled++;
        /* this array's stream, to be sent again: only if pickle sent its
         * whole data as the one out-of-band buffer */
        if (rc == 0 && m->rec.nbufs == 1 && m->nviews == 1 && m->views[0].buf == ndv.buf &&
            m->views[0].len == ndv.len)
            nd_remember(obj, &ndv, nd_dtype, m->owner);
        PyBuffer_Release(&ndv);
        Py_DECREF(nd_dtype);
    }
    return rc;
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
/* The file's path: the queue's prefix, the producer's pid, the token. */
static void spill_path(char *out, size_t n, const char *prefix, uint32_t pid, uint64_t token)
{
    snprintf(out, n, "%s%u.%016llx", prefix, pid, (unsigned long long)token);
}

static void set_os_error(int err, const char *fmt, unsigned long long size, const char *path)
{
    char msg[IL_SPILL_PATH_MAX + 200];
    snprintf(msg, sizeof msg, fmt, size, path, strerror(err));
    PyObject *args = Py_BuildValue("(is)", err, msg);
    if (args) {
        PyErr_SetObject(PyExc_OSError, args);
        Py_DECREF(args);
    }
}

/* pwrite all of it; 0 or an errno. */
int il_write_all(int fd, const void *src, uint64_t n, uint64_t off)
{
    const char *p = src;
    while (n) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t w = pwrite(fd, p, chunk, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (w == 0)
            return EIO;
        p += w;
        off += (uint64_t)w;
        n -= (uint64_t)w;
    }
    return 0;
}

/* pread all of it; 0 or an errno (EIO for a file shorter than promised). */
int il_read_all(int fd, void *dst, uint64_t n, uint64_t off)
{
    char *p = dst;
    while (n) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t r = pread(fd, p, chunk, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (r == 0)
            return EIO;
        p += r;
        off += (uint64_t)r;
        n -= (uint64_t)r;
    }
    return 0;
}

/* Copy the prepared item m into a new unnamed file in the spill directory
 * and turn m into an IL_REC_SPILL record naming it.  No ring lock held.
 * The file is made with O_TMPFILE: a producer killed while writing it
 * leaves nothing (the file dies with its last descriptor); il_spill_link
 * names it under plock, right before the record is published.  The pages
 * are reserved (posix_fallocate) before a byte is written, so that a full
 * /dev/shm is an error at once, before any copy.  The copy runs
 * without the GIL: the sources are held by m (the bytes object, the
 * buffers' exports).  Returns 0, or -1 with OSError (nothing left behind). */
/* Copy the item's parts into `dst` (the file's layout, spill.md). */
static void spill_copy(char *dst, const msg_t *m, int nb)
{
    uint64_t off = 0;
    for (int i = 0; i < nb; i++) {
        uint64_t e = spill_entry(m, i);
        memcpy(dst + off, &e, 8);
        off += 8;
    }
    memcpy(dst + off, m->data, (size_t)m->dlen);
    off += (uint64_t)m->dlen;
    for (int i = 0; i < nb; i++) {
        uint64_t a = spill_buf_off(off, spill_phase(m->views[i].buf, m->lens[i]));
        memset(dst + off, 0, (size_t)(a - off)); /* the gap: zeros */
        memcpy(dst + a, m->views[i].buf, (size_t)m->lens[i]);
        off = a + m->lens[i];
    }
}

/* Write the item's parts into a new file (the layout of spill_copy): pwrite,
 * not a mapping: no page fault per page (measured: a stream of 1 MiB items
 * ran at half the rate through mmap).  0 or an errno. */
static int spill_pwrite(int fd, const msg_t *m, int nb)
{
    uint64_t off = 0;
    int err = 0;
    for (int i = 0; i < nb && !err; i++) {
        uint64_t e = spill_entry(m, i);
        err = il_write_all(fd, &e, 8, off);
        off += 8;
    }
    if (!err)
        err = il_write_all(fd, m->data, (uint64_t)m->dlen, off);
    off += (uint64_t)m->dlen;
    for (int i = 0; i < nb && !err; i++) {
        /* the gap: zeros (fallocate) */
        off = spill_buf_off(off, spill_phase(m->views[i].buf, m->lens[i]));
        err = il_write_all(fd, m->views[i].buf, m->lens[i], off);
        off += m->lens[i];
    }
    return err;
}

/* The item goes into one of this producer's pooled files (spillpool.h):
 * one memcpy into pages already there.  1 done, 0 no pooled file (the
 * caller makes a fresh one), -1 with OSError. */
static int spill_pooled(const il_spill_cfg_t *cfg, msg_t *m, int nb, uint64_t size)
{
    il_pool_claim_t *c = &m->pool_claim;
    int got = il_pool_claim(cfg, size, c);
    if (got < 0) {
        set_os_error(errno, "no room for a spilled queue item of %llu bytes (%s): %s; "
                            "the item was not put", (unsigned long long)size, cfg->prefix);
        return -1;
    }
    if (!got)
        return 0;
    /* The sources are pinned by m (the bytes object, the buffers' exports);
     * the file is this producer's alone while BUSY and unpublished.  A new
     * file is written with pwrite (its mapping has no pages mapped yet), a
     * reused one through the mapping (every page mapped already). */
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    if (c->fd >= 0) {
        err = spill_pwrite(c->fd, m, nb);
    } else {
        /* The first reuse maps every page in one call (cheaper than a
         * fault per page; the pages exist: no SIGBUS).  EINVAL before
         * Linux 5.14: the copy faults them in. */
        if (c->first_reuse)
            (void)madvise(c->addr, (size_t)c->size, MADV_POPULATE_WRITE);
        spill_copy(c->addr, m, nb);
    }
    Py_END_ALLOW_THREADS
    il_pool_copied(c);
    if (err) {
        il_pool_abort(c);
        close(c->fd);
        set_os_error(err, "no room for a spilled queue item of %llu bytes (%s): %s; "
                          "the item was not put", (unsigned long long)size, cfg->prefix);
        return -1;
    }
    IL_CRASH(RING_SPILL_WRITTEN);
    m->pooled = 1;
    m->spill_fd = c->fd; /* a new file is named by il_spill_link; a reused one has its name */
    spill_path(m->spill_path, sizeof m->spill_path, cfg->prefix, c->pid, c->token);
    m->ref.kind = m->rec.kind;
    m->ref.flags = IL_SPILL_POOLED;
    m->ref.nbufs = (uint16_t)nb;
    m->ref.pid = c->pid;
    m->ref.token = c->token;
    m->ref.dlen = (uint64_t)m->dlen;
    m->ref.size = c->size;
    return 1;
}

/* m's record becomes the reference to its spill file (m->ref, filled):
 * the sources are not needed any more. */
static void spill_record(msg_t *m)
{
    msg_release_sources(m);
    m->rec.kind = IL_REC_SPILL;
    m->rec.nbufs = 0;
    m->rec.len = (uint32_t)sizeof m->ref;
    m->need = IL_ALIGN8(sizeof(il_rec_t) + sizeof m->ref);
}

/* The item's one out-of-band buffer lies in an open loan of this queue
 * (bind_loan.c): it is written in place already; the buffer's length and
 * the pickle stream go before it, in the loan's head, and the loan's file
 * becomes the spill file.  The main part the receiver reads runs from
 * offset 8 up to the buffer (dlen = off - 8, so that the buffer is where
 * the layout puts it, at align64(8 + dlen)): pickle ignores what follows
 * its STOP (the head's rest, zeros).  1 done, 0 not a loan's (the usual
 * path). */
static int spill_loaned(const il_spill_cfg_t *cfg, msg_t *m)
{
    il_loan_t *ln = il_loan_find(cfg, m->views[0].buf, m->lens[0]);
    if (!ln)
        return 0;
    char *addr = ln->claim.addr;
    uint64_t off = (uint64_t)((char *)m->views[0].buf - addr);
    /* aligned as the layout wants, and a stream that fits the head (the
     * user's buffer is never written here) */
    if (off % 64 || 8u + (uint64_t)m->dlen > ln->off)
        return 0;
    memcpy(addr, &m->lens[0], 8);
    memcpy(addr + 8, m->data, (size_t)m->dlen);
    memset(addr + 8 + m->dlen, 0, (size_t)(ln->off - 8 - (uint64_t)m->dlen));
    m->loan = il_loan_object(ln);
    Py_INCREF(m->loan);
    /* relaxed: under the GIL; a put's il_spill_link moves it on */
    atomic_store_explicit(&ln->state, IL_LOAN_PENDING, memory_order_relaxed);
    m->pooled = 1;
    m->pool_claim = ln->claim;
    m->spill_fd = ln->claim.fd; /* a new file is named by il_spill_link */
    memcpy(m->spill_path, ln->path, sizeof m->spill_path);
    m->ref.kind = IL_REC_PICKLE;
    m->ref.flags = IL_SPILL_POOLED;
    m->ref.nbufs = 1;
    m->ref.pid = ln->claim.pid;
    m->ref.token = ln->claim.token;
    m->ref.dlen = off - 8;
    m->ref.size = ln->claim.size;
    spill_record(m);
    return 1;
}

static int spill_write(il_ring_t *r, const il_spill_cfg_t *cfg, msg_t *m)
{
    int nb = m->rec.kind == IL_REC_PICKLE ? m->rec.nbufs : 0;
    uint64_t size = 8u * (uint64_t)nb + (uint64_t)m->dlen;
    /* room for the largest gap before each buffer, whatever its source's
     * address: items of one size fit one pooled file, wherever their
     * buffers lie (a few KiB more per large buffer) */
    for (int i = 0; i < nb; i++)
        size += (m->lens[i] >= IL_SPILL_PHASE_MIN ? 4095u : 63u) + m->lens[i];
    if (size == 0)
        size = 8; /* (an empty item never reaches the threshold) */
    int pooled = spill_pooled(cfg, m, nb, size);
    if (pooled < 0)
        return -1;
    if (pooled)
        goto done;
    char dir[IL_SPILL_PREFIX_MAX];
    const char *slash = strrchr(cfg->prefix, '/');
    size_t dl = slash ? (size_t)(slash - cfg->prefix) : 0;
    if (!dl || dl >= sizeof dir) {
        PyErr_SetString(PyExc_ValueError, "invalid spill prefix");
        return -1;
    }
    memcpy(dir, cfg->prefix, dl);
    dir[dl] = 0;
    uint64_t token;
    if (getrandom(&token, sizeof token, GRND_NONBLOCK) != (ssize_t)sizeof token)
        token = (uint64_t)il_now_ns() ^ ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)m;
    uint32_t pid = (uint32_t)getpid();
    spill_path(m->spill_path, sizeof m->spill_path, cfg->prefix, pid, token);
    int fd, err = 0;
    for (int attempt = 0;; attempt++) {
        Py_BEGIN_ALLOW_THREADS
        fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0) {
            err = errno;
        } else if (ftruncate(fd, (off_t)size) < 0) {
            err = errno;
        } else if ((err = posix_fallocate(fd, 0, (off_t)size)) == 0) {
            err = spill_pwrite(fd, m, nb);
        }
        if (err && fd >= 0) {
            close(fd);
            fd = -1;
        }
        Py_END_ALLOW_THREADS
        /* No room: this producer's idle pooled files may hold it. */
        if (err != ENOSPC || attempt > 0 || il_pool_shrink(cfg) == 0)
            break;
        err = 0;
    }
    if (err) {
        set_os_error(err, "no room for a spilled queue item of %llu bytes (%s): %s; "
                          "the item was not put", (unsigned long long)size, dir);
        return -1;
    }
    IL_CRASH(RING_SPILL_WRITTEN);
    m->spill_fd = fd;
    m->ref.kind = m->rec.kind;
    m->ref.flags = 0;
    m->ref.nbufs = (uint16_t)nb;
    m->ref.pid = pid;
    m->ref.token = token;
    m->ref.dlen = (uint64_t)m->dlen;
    m->ref.size = size;
done:
    spill_record(m);
    (void)r;
    return 0;
}

int il_spill_link(il_ring_t *r, msg_t *m)
{
    if (m->spill_fd < 0) {
        /* a reused pooled file: named already; counted as an item spilled
         * (relaxed, as below) */
        atomic_fetch_add_explicit(&r->spilled, 1, memory_order_relaxed);
        m->published = 1;
        if (m->loan) /* relaxed: the loan object is read under the GIL */
            atomic_store_explicit(&il_loan_of(m->loan)->state, IL_LOAN_SENT, memory_order_relaxed);
        return 0;
    }
    /* Counted before it is named, so that the count is never behind the
     * files that exist (the last user's cleanup lists the directory only
     * when it is not 0).  relaxed: read only by a process that runs after
     * every user is gone (its own earlier stores are all it needs). */
    atomic_fetch_add_explicit(&r->spilled, 1, memory_order_relaxed);
    char proc[48];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", m->spill_fd);
    if (linkat(AT_FDCWD, proc, AT_FDCWD, m->spill_path, AT_SYMLINK_FOLLOW) < 0)
        return -1;
    close(m->spill_fd); /* (a pooled file lives on in the producer's mapping) */
    m->spill_fd = -1;
    m->published = 1;
    if (m->loan) {
        il_loan_t *ln = il_loan_of(m->loan);
        ln->claim.fd = -1; /* (the same descriptor: closed above) */
        atomic_store_explicit(&ln->state, IL_LOAN_SENT, memory_order_relaxed);
    }
    IL_CRASH(RING_SPILL_LINKED);
    return 0;
}

/* A plain built-in value (bind_pack.h) that fits in one record of the ring
 * (below the spill threshold, if any: only pickled items spill): packed
 * into m, kind IL_REC_PACKED.  0: not packable (pickle it); 1: packed, or
 * out of memory (the kind is not set, an exception is). */
static int pack(il_ring_t *r, const il_spill_cfg_t *cfg, PyObject *obj, msg_t *m)
{
    uint64_t room = r->capacity;
    if (cfg && cfg->threshold && cfg->threshold < room)
        room = cfg->threshold;
    room &= ~(uint64_t)7u; /* need = IL_ALIGN8(8 + len) <= room */
    if (room <= sizeof(il_rec_t))
        return 0;
    Py_ssize_t len = il_pack_size(obj, (Py_ssize_t)(room - sizeof(il_rec_t) < IL_PACK_MAX_BYTES
                                                       ? room - sizeof(il_rec_t)
                                                       : IL_PACK_MAX_BYTES));
    if (!len)
        return 0;
    PyObject *b = PyBytes_FromStringAndSize(NULL, len);
    if (!b)
        return 1;
    il_pack_write(obj, PyBytes_AS_STRING(b));
    m->rec.kind = IL_REC_PACKED;
    m->owner = b;
    m->data = PyBytes_AS_STRING(b);
    m->dlen = len;
    return 1;
}

static int msg_prepare(il_ring_t *r, const il_spill_cfg_t *cfg, PyObject *obj, msg_t *m,
                       int later)
{
    memset(m, 0, offsetof(msg_t, ref));
    m->spill_fd = -1;
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
    } else if (!pack(r, cfg, obj, m)) {
        m->rec.kind = IL_REC_PICKLE;
        if (msg_pickle(obj, m, !no_oob_buffers(obj)) < 0) {
            il_msg_release(m);
            return -1;
        }
    } else if (m->rec.kind != IL_REC_PACKED) {
        return -1; /* (out of memory) */
    }
    uint64_t len = (uint64_t)m->dlen;
    if (!m->has_ba_view) {
        len += 8u * m->rec.nbufs;
        for (int i = 0; i < m->rec.nbufs; i++)
            len += m->lens[i];
    }
    m->need = IL_ALIGN8(sizeof(il_rec_t) + len);
    /* a numpy array (any one out-of-band buffer) made on a loan of this
     * queue: sent in place, whatever its size */
    if (m->rec.nbufs == 1 && m->rec.kind == IL_REC_PICKLE && cfg && cfg->threshold &&
        spill_loaned(cfg, m))
        return 0;
    if (cfg && cfg->threshold && m->need > cfg->threshold) {
        if (later) {
            m->spill_later = 1;
            return 0;
        }
        if (spill_write(r, cfg, m) < 0) {
            il_msg_release(m);
            return -1;
        }
        return 0;
    }
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

int il_msg_prepare(il_ring_t *r, const il_spill_cfg_t *cfg, PyObject *obj, msg_t *m)
{
    return msg_prepare(r, cfg, obj, m, 0);
}

int il_msg_prepare_batch(il_ring_t *r, const il_spill_cfg_t *cfg, PyObject *obj, msg_t *m)
{
    return msg_prepare(r, cfg, obj, m, 1);
}

int il_msg_spill(il_ring_t *r, const il_spill_cfg_t *cfg, msg_t *m)
{
    if (!m->spill_later)
        return 0;
    if (spill_write(r, cfg, m) < 0)
        return -1; /* (spill_write leaves m releasable, as il_msg_prepare relies on) */
    m->spill_later = 0;
    return 0;
}

/* Under plock, room checked: copy the record in at pos.  Returns new pos. */
uint32_t il_msg_write(il_ring_t *r, uint32_t pos, msg_t *m)
{
    il_ring_write(r, pos, &m->rec, sizeof m->rec);
    IL_CRASH(RING_PUT_HEADER);
    uint32_t p = pos + (uint32_t)sizeof m->rec;
    if (m->rec.kind == IL_REC_SPILL) {
        il_ring_write(r, p, &m->ref, sizeof m->ref);
        return pos + (uint32_t)m->need;
    }
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

void il_msg_serialize(msg_t *m, unsigned char *out)
{
    memcpy(out, &m->rec, sizeof m->rec);
    unsigned char *p = out + sizeof m->rec;
    if (m->rec.kind == IL_REC_SPILL) {
        memcpy(p, &m->ref, sizeof m->ref);
        p += sizeof m->ref;
    } else {
        if (m->rec.kind == IL_REC_PICKLE && m->rec.nbufs) {
            memcpy(p, m->lens, 8u * m->rec.nbufs);
            p += 8u * m->rec.nbufs;
        }
        memcpy(p, m->data, (size_t)m->dlen);
        p += m->dlen;
        if (m->rec.kind == IL_REC_PICKLE) {
            for (int i = 0; i < m->nviews; i++) {
                memcpy(p, m->views[i].buf, (size_t)m->views[i].len);
                p += m->views[i].len;
            }
        }
    }
    memset(p, 0, (size_t)(out + m->need - p)); /* the padding */
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
/* A byte ring (data, size: a power of two) read at pos, wrapping: the
 * ring's, or a linear buffer given as one of 2^62 bytes (never wraps). */
static inline void buf_read(const unsigned char *data, uint64_t size, uint32_t pos, void *dst,
                            size_t n)
{
    size_t off = pos & (size - 1), first = size - off;
    if (n <= first) {
        memcpy(dst, data + off, n);
    } else {
        /* The caller checked the record against the ring (n <= size), so
         * the wrapped part is at most off bytes.  Said again here for the
         * compiler: inlining the linear case (size 2^62) it cannot see that
         * bound and warned of a memcpy past any object's size. */
        size_t rest = n - first;
        if (rest > off)
            rest = off;
        memcpy(dst, data + off, first);
        memcpy((char *)dst + first, data, rest);
    }
}

static inline __attribute__((always_inline)) uint64_t
raw_read_at(const unsigned char *data, uint64_t size, uint64_t capacity, uint32_t pos,
            uint32_t avail, raw_t *x);

uint64_t il_raw_read(il_ring_t *r, uint32_t pos, uint32_t avail, raw_t *x)
{
    return raw_read_at(r->data, r->size, r->capacity, pos, avail, x);
}

uint64_t il_raw_read_linear(const unsigned char *buf, uint32_t avail, uint64_t capacity,
                            raw_t *x)
{
    return raw_read_at(buf, 1ull << 62, capacity, 0, avail, x);
}

/* (inlined into both callers: the ring's read keeps its constant-free fast path) */
static inline __attribute__((always_inline)) uint64_t
raw_read_at(const unsigned char *data, uint64_t size, uint64_t capacity, uint32_t pos,
            uint32_t avail, raw_t *x)
{
    il_rec_t rec;
    memset(x, 0, offsetof(raw_t, ref));
    if (avail < sizeof rec || (avail & 7u)) {
        PyErr_Format(PyExc_RuntimeError,
                     "interlock queue is corrupt: %u published bytes at position %u cannot hold "
                     "a record (was the segment written by something else?)",
                     avail, pos);
        return 0;
    }
    buf_read(data, size, pos, &rec, sizeof rec);
    uint64_t need = IL_ALIGN8(sizeof rec + (uint64_t)rec.len);
    /* kinds 1 .. 4 (IL_REC_BYTES .. IL_REC_SPILL): one unsigned compare; and 6 */
    if (need > capacity || need > avail ||
        ((unsigned)(rec.kind - IL_REC_BYTES) > 3u && rec.kind != IL_REC_PACKED) ||
        (rec.kind != IL_REC_PICKLE && rec.nbufs) || 8ull * rec.nbufs > rec.len ||
        (rec.kind == IL_REC_SPILL && rec.len != sizeof(il_spill_ref_t))) {
        PyErr_Format(PyExc_RuntimeError,
                     "interlock queue is corrupt: record of kind %u, length %u and %u buffer(s) "
                     "at position %u, with %u published bytes from there "
                     "(was the segment written by something else?)",
                     rec.kind, rec.len, rec.nbufs, pos, avail);
        return 0;
    }
    uint32_t p = pos + (uint32_t)sizeof rec;
    x->kind = rec.kind;
    if (__builtin_expect(rec.kind == IL_REC_SPILL, 0)) {
        /* Only the reference is read here; the file is mapped after the
         * commit, outside the lock (il_raw_finish).  It is checked there. */
        buf_read(data, size, p, &x->ref, sizeof x->ref);
        return need;
    }
    if (rec.kind == IL_REC_BYTES || rec.kind == IL_REC_PACKED) {
        /* (a packed item is unpacked after the lock: il_raw_finish) */
        x->data = PyBytes_FromStringAndSize(NULL, rec.len);
        if (!x->data)
            return 0;
        buf_read(data, size, p, PyBytes_AS_STRING(x->data), rec.len);
        return need;
    }
    if (rec.kind == IL_REC_BYTEARRAY) {
        x->data = PyByteArray_FromStringAndSize(NULL, rec.len);
        if (!x->data)
            return 0;
        buf_read(data, size, p, PyByteArray_AS_STRING(x->data), rec.len);
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
        buf_read(data, size, p, lens, 8u * rec.nbufs);
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
            buf_read(data, size, bp, PyByteArray_AS_STRING(x->bufs[i]), lens[i]);
            bp += (uint32_t)lens[i];
        }
        PyMem_Free(lens);
    }
    x->data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)dlen);
    if (!x->data)
        return 0;
    buf_read(data, size, p, PyBytes_AS_STRING(x->data), dlen);
    return need;
}

static PyObject *mv_slice(PyObject *mv, uint64_t a, uint64_t b)
{
    PyObject *lo = PyLong_FromUnsignedLongLong(a), *hi = PyLong_FromUnsignedLongLong(b);
    PyObject *sl = lo && hi ? PySlice_New(lo, hi, NULL) : NULL;
    Py_XDECREF(lo);
    Py_XDECREF(hi);
    if (!sl)
        return NULL;
    PyObject *res = PyObject_GetItem(mv, sl);
    Py_DECREF(sl);
    return res;
}

/* The file a reference names: a regular file of ours, mode 0600, of the
 * length the reference gives (else it is not what was put). */
static int spill_stat_ok(const struct stat *st, uint64_t size)
{
    return S_ISREG(st->st_mode) && st->st_uid == geteuid() && !(st->st_mode & 077) &&
           (uint64_t)st->st_size == size;
}

/* ... opened (*st filled) */
static int spill_file_ok(int fd, uint64_t size, struct stat *st)
{
    return fstat(fd, st) == 0 && spill_stat_ok(st, size);
}

/* ... by its name, without a descriptor (*st filled): this process's kept
 * mapping of it (bind_warmmap.c), now in use (*wr), or NULL. */
static char *spill_warm_take(const char *path, uint64_t size, struct stat *st, il_warm_ref_t *wr)
{
    if (fstatat(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW) != 0 || !spill_stat_ok(st, size))
        return NULL;
    return il_warm_take(path, st, size, wr);
}

static PyObject *spill_corrupt(const char *path, const char *why)
{
    PyErr_Format(PyExc_RuntimeError,
                 "interlock queue: the spilled item in %s is unusable (%s); the item is lost",
                 path, why);
    return NULL;
}

extern int il_mapping_set_pool(PyObject *mapping, const char *path); /* bind_mapping.c */
extern PyObject *il_mapping_wrap(char *addr, Py_ssize_t size);
extern void il_mapping_set_warm(PyObject *mapping, const il_warm_ref_t *ref);
static PyObject *item_from_mapping(PyObject *mapping, const char *path, const il_spill_ref_t *r,
                                   uint64_t csize);

/* Map a pooled spill file (spillpool.h) without populating it (its pages
 * are there; each is mapped at first touch), check its trailer, take it
 * (holder) and make the mapping hand it back when it goes.  `warm_addr`:
 * a kept mapping of the file (bind_warmmap.c, *wr), in place of a new one
 * of `fd` (opened and checked: *st); a new one is kept in turn, room
 * permitting.  The mapping, or NULL with an exception. */
static PyObject *pooled_map(int fd, char *warm_addr, const il_warm_ref_t *wr,
                            const struct stat *st, const char *path, uint64_t size, char **base)
{
    PyObject *mapping;
    if (warm_addr) {
        mapping = il_mapping_wrap(warm_addr, (Py_ssize_t)size);
        if (!mapping) {
            il_warm_put_back(wr, warm_addr, 1); /* untouched: idle again */
            return NULL;
        }
        il_mapping_set_warm(mapping, wr);
    } else {
        mapping = PyObject_CallFunction((PyObject *)&il_MappingType, "ini", fd,
                                        (Py_ssize_t)size, 0);
        if (!mapping)
            return NULL; /* (the file stays BUSY: its producer forgets it at detach) */
    }
    Py_buffer v;
    if (PyObject_GetBuffer(mapping, &v, PyBUF_SIMPLE) < 0) {
        Py_DECREF(mapping);
        return NULL;
    }
    *base = v.buf;
    PyBuffer_Release(&v);
    il_pool_trailer_t *t = (il_pool_trailer_t *)(*base + size - sizeof(il_pool_trailer_t));
    if (t->magic != IL_POOL_MAGIC) {
        Py_DECREF(mapping); /* (a kept one is forgotten: not reusable) */
        spill_corrupt(path, "a pooled file without its trailer");
        return NULL;
    }
    /* relaxed: a hint for the producer's check of a killed holder */
    atomic_store_explicit(&t->holder, (uint32_t)getpid(), memory_order_relaxed);
    if (il_mapping_set_pool(mapping, path) < 0) {
        Py_DECREF(mapping);
        return NULL;
    }
    il_warm_ref_t nr;
    if (!warm_addr && il_warm_add(path, st, *base, size, &nr))
        il_mapping_set_warm(mapping, &nr);
    return mapping;
}

/* A pooled spill file: build the item.  The name stays: the file goes back
 * to its producer when the mapping goes -- at once for bytes and bytearray
 * (copied out), with the last view for a pickle's buffers (numpy arrays). */
static PyObject *pooled_finish(int fd, char *warm_addr, const il_warm_ref_t *wr,
                               const struct stat *st, const char *path,
                               const il_spill_ref_t *ref, uint64_t csize)
{
    char *base;
    PyObject *mapping = pooled_map(fd, warm_addr, wr, st, path, ref->size, &base);
    if (fd >= 0)
        close(fd);
    if (!mapping)
        return NULL;
    if (ref->kind == IL_REC_PICKLE)
        return item_from_mapping(mapping, path, ref, csize);
    int ba = ref->kind == IL_REC_BYTEARRAY;
    PyObject *res = ba ? PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)ref->dlen)
                       : PyBytes_FromStringAndSize(NULL, (Py_ssize_t)ref->dlen);
    if (res) {
        char *dst = ba ? PyByteArray_AS_STRING(res) : PyBytes_AS_STRING(res);
        Py_BEGIN_ALLOW_THREADS
        memcpy(dst, base, (size_t)ref->dlen);
        Py_END_ALLOW_THREADS
    }
    Py_DECREF(mapping); /* copied out: handed back now */
    return res;
}

/* A spilled item, its record consumed: map its file, unlink it (the
 * mapping keeps the memory while the item lives), and build the item.
 * bytes and bytearray are copied out (one copy, as from the ring); a
 * pickle's out-of-band buffers (numpy arrays) are memoryviews of the
 * mapping itself: no second copy. */
static PyObject *spill_finish(raw_t *x, const il_spill_cfg_t *cfg)
{
    IL_CRASH(RING_SPILL_TAKEN);
    il_spill_ref_t ref = x->ref;
    char path[IL_SPILL_PATH_MAX];
    if (!cfg || !cfg->prefix[0]) {
        PyErr_SetString(PyExc_RuntimeError,
                        "interlock queue: a spilled item, but this handle has no spill directory");
        return NULL;
    }
    spill_path(path, sizeof path, cfg->prefix, ref.pid, ref.token);
    int pooled = (ref.flags & IL_SPILL_POOLED) != 0;
    /* the item's bytes: all of the file, or all but a pooled file's trailer */
    uint64_t csize = pooled && ref.size >= sizeof(il_pool_trailer_t)
                         ? ref.size - sizeof(il_pool_trailer_t) : ref.size;
    if ((ref.kind != IL_REC_BYTES && ref.kind != IL_REC_BYTEARRAY && ref.kind != IL_REC_PICKLE) ||
        (ref.kind != IL_REC_PICKLE && ref.nbufs) || ref.size == 0 || csize == 0 ||
        (pooled && ref.size < sizeof(il_pool_trailer_t) + 8) ||
        ref.size > (uint64_t)PY_SSIZE_T_MAX || 8u * (uint64_t)ref.nbufs > csize ||
        ref.dlen > csize - 8u * (uint64_t)ref.nbufs)
        return spill_corrupt(path, "bad reference");
    struct stat st;
    if (pooled) {
        /* A mapping this process kept of the file, from an earlier item
         * in it (bind_warmmap.c): no open, no mmap, its pages mapped. */
        il_warm_sweep();
        il_warm_ref_t wr;
        char *addr = spill_warm_take(path, ref.size, &st, &wr);
        if (addr)
            return pooled_finish(-1, addr, &wr, &st, path, &ref, csize);
    }
    int fd = open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        set_os_error(err, "the spilled queue item's file (%llu bytes, %s) cannot be opened: %s; "
                          "the item is lost", (unsigned long long)ref.size, path);
        return NULL;
    }
    if (!spill_file_ok(fd, ref.size, &st)) {
        close(fd); /* not ours, or not what was put: never removed */
        return spill_corrupt(path, "not the file that was put");
    }
    if (pooled)
        return pooled_finish(fd, NULL, NULL, &st, path, &ref, csize);
    if (ref.kind != IL_REC_PICKLE) {
        /* bytes and bytearray own their memory: read into it (pread: no
         * mapping, no page faults), then let the file go. */
        int ba = ref.kind == IL_REC_BYTEARRAY;
        PyObject *res = ba ? PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)ref.dlen)
                           : PyBytes_FromStringAndSize(NULL, (Py_ssize_t)ref.dlen);
        int err = 0;
        if (res) {
            char *dst = ba ? PyByteArray_AS_STRING(res) : PyBytes_AS_STRING(res);
            Py_BEGIN_ALLOW_THREADS
            err = il_read_all(fd, dst, ref.dlen, 0);
            Py_END_ALLOW_THREADS
        }
        unlink(path); /* read (or lost to an error): the name is not needed any more */
        close(fd);
        if (res && err) {
            Py_CLEAR(res);
            set_os_error(err, "the spilled queue item's file (%llu bytes, %s) cannot be read: %s; "
                              "the item is lost", (unsigned long long)ref.size, path);
        }
        return res;
    }
    PyObject *mapping = PyObject_CallFunction((PyObject *)&il_MappingType, "ini", fd,
                                              (Py_ssize_t)ref.size, 1);
    unlink(path); /* mapped (or lost to an error): the name is not needed any more */
    close(fd);
    if (!mapping)
        return NULL;
    return item_from_mapping(mapping, path, &ref, ref.size);
}

/* Build a pickled spilled item from the mapping of its file (consumed):
 * the main part and the buffers are views of it, no copy.  `csize`: the
 * item's bytes in the file. */
static PyObject *item_from_mapping(PyObject *mapping, const char *path, const il_spill_ref_t *r,
                                   uint64_t csize)
{
    il_spill_ref_t ref = *r;
    PyObject *mv = PyMemoryView_FromObject(mapping);
    Py_DECREF(mapping); /* the view holds it */
    if (!mv)
        return NULL;
    const char *base = PyMemoryView_GET_BUFFER(mv)->buf;
    PyObject *res = NULL;
    uint64_t dstart = 8u * (uint64_t)ref.nbufs;
    PyObject *data = NULL, *list = NULL;
    if (ref.nbufs) {
        list = PyList_New(ref.nbufs);
        if (!list)
            goto out;
        uint64_t off = dstart + ref.dlen;
        for (int i = 0; i < ref.nbufs; i++) {
            uint64_t entry;
            memcpy(&entry, base + 8u * (uint64_t)i, 8);
            uint64_t len = entry & IL_SPILL_LEN_MASK, phase = entry >> IL_SPILL_PHASE_SHIFT;
            if (phase > 4096u || off > csize) {
                spill_corrupt(path, "bad buffer lengths");
                goto out;
            }
            off = spill_buf_off(off, phase);
            if (off > csize || len > csize - off) {
                spill_corrupt(path, "bad buffer lengths");
                goto out;
            }
            PyObject *b = mv_slice(mv, off, off + len);
            if (!b)
                goto out;
            PyList_SET_ITEM(list, i, b);
            off += len;
        }
    }
    data = mv_slice(mv, dstart, dstart + ref.dlen);
    if (!data)
        goto out;
    if (list) {
        PyObject *args[3] = {data, list};
        res = PyObject_Vectorcall(pickle_loads, args, 1, kw_buffers);
    } else {
        res = PyObject_CallOneArg(pickle_loads, data);
    }
out:
    Py_XDECREF(data);
    Py_XDECREF(list);
    Py_DECREF(mv);
    return res;
}

void il_raw_discard(raw_t *x, const il_spill_cfg_t *cfg)
{
    if (x->kind == IL_REC_SPILL && cfg && cfg->prefix[0]) {
        char path[IL_SPILL_PATH_MAX];
        spill_path(path, sizeof path, cfg->prefix, x->ref.pid, x->ref.token);
        if (!(x->ref.flags & IL_SPILL_POOLED)) {
            unlink(path);
        } else {
            /* a pooled file goes back to its producer (mapped and unmapped,
             * or through a kept mapping of it) */
            struct stat st;
            il_warm_ref_t wr;
            char *addr = NULL;
            int fd = -1;
            if (x->ref.size >= sizeof(il_pool_trailer_t) + 8) {
                addr = spill_warm_take(path, x->ref.size, &st, &wr);
                if (!addr) {
                    fd = open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
                    if (fd >= 0 && !spill_file_ok(fd, x->ref.size, &st)) {
                        close(fd);
                        fd = -1;
                    }
                }
            }
            if (addr || fd >= 0) {
                PyObject *et, *ev, *tb;
                PyErr_Fetch(&et, &ev, &tb); /* (called on an error path) */
                char *base;
                PyObject *mp = pooled_map(fd, addr, &wr, &st, path, x->ref.size, &base);
                Py_XDECREF(mp);
                PyErr_Clear();
                PyErr_Restore(et, ev, tb);
            }
            if (fd >= 0)
                close(fd);
        }
    }
    il_raw_clear(x);
}

/* After clock is released: the Python object.  Consumes x. */
PyObject *il_raw_finish(raw_t *x, const il_spill_cfg_t *cfg)
{
    if (x->kind == IL_REC_SPILL) {
        il_raw_clear(x);
        return spill_finish(x, cfg);
    }
    if (x->kind == IL_REC_PACKED) {
        PyObject *o = il_unpack(PyBytes_AS_STRING(x->data), PyBytes_GET_SIZE(x->data));
        il_raw_clear(x);
        return o;
    }
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
    str_dtype = PyUnicode_InternFromString("dtype");
    PyObject *copyreg = PyImport_ImportModule("copyreg");
    if (!copyreg)
        return -1;
    copyreg_dispatch = PyObject_GetAttrString(copyreg, "dispatch_table");
    Py_DECREF(copyreg);
    if (!pickle_dumps || !pickle_loads || !kw_buffer_callback || !kw_buffers || !protocol5 ||
        !str_dtype || !copyreg_dispatch)
        return -1;
    return 0;
}
