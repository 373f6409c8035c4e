/*
 * bind_resp.c -- the Redis backend's wire fast path: RESP2 commands packed,
 * sent and their replies read and parsed in C, one call per round trip.
 *
 * Why: with redis-py's pure-Python connection (no hiredis), packing a
 * command and parsing its reply cost about 60 us of CPU per call on the
 * 2-vCPU reference machine, against about 30 us for the send and receive
 * themselves.  On one machine, the producer, the consumer and the server
 * share the CPUs, so that CPU is throughput (docs/design/redis.md, "Wire").
 *
 * What it is not: a client.  The connection (TCP or Unix socket, the
 * handshake: AUTH, SELECT, HELLO) is made by redis-py; the Python side
 * (_redis/_client.py, FastConn) hands this file the socket's descriptor,
 * and falls back to redis-py for everything this file does not do (TLS,
 * RESP3, Cluster and Sentinel connections).
 *
 *   resp_pack(cmds) -> bytes
 *       cmds: a sequence of commands, each a sequence of arguments (bytes,
 *       bytearray, memoryview, str as UTF-8, int, float as repr());
 *       anything else (bool, None, ...) raises TypeError.
 *   resp_call(fd, data, n, send_timeout, recv_timeout, errfactory, check,
 *             rcvtimeo=0) -> list of n replies, or None
 *       Sends `data` (whole commands), then reads exactly n replies.
 *       With `check`, the socket is first peeked without waiting: a
 *       connection that the server closed (EOF) or that holds bytes nobody
 *       asked for is stale, and None is returned with nothing sent.
 *       Replies: bulk and simple strings as bytes, integers as int, arrays
 *       as list, nulls as None, error replies as errfactory(message) (an
 *       exception instance, in place: the caller raises or keeps it).
 *       Raises TimeoutError past a timeout (send: `send_timeout` seconds;
 *       the replies: `recv_timeout` seconds from the end of the send),
 *       ConnectionError on EOF or a reply that is not RESP2, OSError on a
 *       socket error, and whatever a signal handler raises (the wait is
 *       interruptible, as a Python socket's is).  After any exception the
 *       connection's state is unknown: the caller must drop it.
 *       rcvtimeo > 0 says that the descriptor is blocking and its
 *       SO_RCVTIMEO is that many seconds: the replies are then awaited in
 *       recv() itself while at least that much time is left (see below).
 *
 * The GIL is released for the send, the waits and the scan of the replies;
 * it is held to build the reply objects.  Nothing here touches shared
 * memory: no atomics.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define RESP_MAX_DEPTH 32
#define RESP_MAX_BULK (512LL * 1024 * 1024) /* Redis's own limit (proto-max-bulk-len) */

/* ------------------------------------------------------------------ pack */

typedef struct {
    char *p;
    size_t len, cap;
} rbuf_t;

static int rbuf_reserve(rbuf_t *b, size_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static int rbuf_put(rbuf_t *b, const void *data, size_t n)
{
    if (rbuf_reserve(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

/* "<c><n>\r\n" */
static int rbuf_head(rbuf_t *b, char c, long long n)
{
    char tmp[32];
    int k = snprintf(tmp, sizeof tmp, "%c%lld\r\n", c, n);
    return rbuf_put(b, tmp, (size_t)k);
}

static int rbuf_bulk(rbuf_t *b, const char *data, size_t n)
{
    if (rbuf_head(b, '$', (long long)n) < 0 || rbuf_reserve(b, n + 2) < 0)
        return -1;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len++] = '\r';
    b->p[b->len++] = '\n';
    return 0;
}

/* A text form of an argument (str(), repr(), the str itself) as a bulk
 * string, in UTF-8; steals the reference to `t` (NULL: the error is set). */
static int pack_text(rbuf_t *b, PyObject *t)
{
    if (!t)
        return -1;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(t, &n);
    int rc = s ? rbuf_bulk(b, s, (size_t)n) : -1;
    Py_DECREF(t);
    return rc;
}

static int pack_arg(rbuf_t *b, PyObject *a)
{
    if (PyBytes_CheckExact(a))
        return rbuf_bulk(b, PyBytes_AS_STRING(a), (size_t)PyBytes_GET_SIZE(a));
    if (PyUnicode_Check(a)) {
        Py_INCREF(a);
        return pack_text(b, a);
    }
    if (PyLong_Check(a) && !PyBool_Check(a)) {
        /* (a bool, as None, is a caller's mistake, not "1": refused below,
         * as redis-py does) */
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(a, &overflow);
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (overflow)
            return pack_text(b, PyObject_Str(a)); /* an int beyond 64 bits */
        char tmp[24];
        int k = snprintf(tmp, sizeof tmp, "%lld", v);
        return rbuf_bulk(b, tmp, (size_t)k);
    }
    if (PyFloat_Check(a))
        return pack_text(b, PyObject_Repr(a)); /* as redis-py: repr(), no precision lost */
    if (!PyBool_Check(a) && PyObject_CheckBuffer(a)) {
        Py_buffer v;
        if (PyObject_GetBuffer(a, &v, PyBUF_SIMPLE) < 0)
            return -1;
        int rc = rbuf_bulk(b, v.buf, (size_t)v.len);
        PyBuffer_Release(&v);
        return rc;
    }
    PyErr_Format(PyExc_TypeError, "invalid Redis command argument of type '%s'",
                 Py_TYPE(a)->tp_name);
    return -1;
}

static PyObject *resp_pack(PyObject *m, PyObject *cmds)
{
    PyObject *outer = PySequence_Fast(cmds, "resp_pack() takes a sequence of commands");
    if (!outer)
        return NULL;
    rbuf_t b = {0};
    PyObject *res = NULL;
    Py_ssize_t nc = PySequence_Fast_GET_SIZE(outer);
    for (Py_ssize_t i = 0; i < nc; i++) {
        PyObject *one = PySequence_Fast_GET_ITEM(outer, i);
        if (PyUnicode_Check(one) || PyBytes_Check(one) || PyByteArray_Check(one)) {
            /* a sequence, but of characters or byte values: the caller
             * passed a command where a list of commands was wanted */
            PyErr_Format(PyExc_TypeError, "a command is a sequence of arguments, not %s",
                         Py_TYPE(one)->tp_name);
            goto done;
        }
        PyObject *cmd = PySequence_Fast(one, "a command is a sequence of arguments");
        if (!cmd)
            goto done;
        Py_ssize_t na = PySequence_Fast_GET_SIZE(cmd);
        int rc = na > 0 ? rbuf_head(&b, '*', na) : -1;
        if (na == 0)
            PyErr_SetString(PyExc_ValueError, "an empty Redis command");
        for (Py_ssize_t j = 0; rc == 0 && j < na; j++)
            rc = pack_arg(&b, PySequence_Fast_GET_ITEM(cmd, j));
        Py_DECREF(cmd);
        if (rc < 0)
            goto done;
    }
    res = PyBytes_FromStringAndSize(b.p ? b.p : "", (Py_ssize_t)b.len);
done:
    free(b.p);
    Py_DECREF(outer);
    return res;
}

/* ------------------------------------------------------------------ scan */

/* The end of the CRLF-terminated line that starts at `pos`: the offset of
 * its '\r', or -1 if the line is not complete yet. */
static long long line_end(const char *p, size_t len, size_t pos)
{
    for (;;) {
        const char *cr = memchr(p + pos, '\r', len - pos);
        if (!cr || (size_t)(cr - p) + 1 >= len)
            return -1;
        if (cr[1] == '\n')
            return cr - p;
        pos = (size_t)(cr - p) + 1; /* a lone '\r' inside a simple string */
    }
}

/* A signed 64-bit decimal (RESP2 integers and lengths): -1 if it is not
 * one (empty, a stray character, more than 19 digits, out of range). */
static int parse_ll(const char *s, const char *e, long long *out)
{
    int neg = 0;
    if (s < e && *s == '-') {
        neg = 1;
        s++;
    }
    if (s == e || e - s > 19)
        return -1;
    unsigned long long v = 0;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (unsigned long long)(*s - '0'); /* 19 digits fit in 64 unsigned bits */
    }
    if (v > (unsigned long long)LLONG_MAX + (unsigned long long)neg)
        return -1;
    *out = neg ? (long long)(0ULL - v) : (long long)v;
    return 0;
}

#define SCAN_INCOMPLETE (-1)
#define SCAN_BAD (-2)

/* Where the reply that starts at `pos` ends (the offset just past it),
 * SCAN_INCOMPLETE, or SCAN_BAD (not RESP2).  No Python: runs without the
 * GIL. */
static long long scan(const char *p, size_t len, size_t pos, int depth)
{
    if (depth > RESP_MAX_DEPTH)
        return SCAN_BAD;
    if (pos >= len)
        return SCAN_INCOMPLETE;
    char t = p[pos];
    if (t != '+' && t != '-' && t != ':' && t != '$' && t != '*')
        return SCAN_BAD; /* a RESP3 type, or garbage: at once, not at the line's end */
    long long e = line_end(p, len, pos + 1);
    if (e < 0)
        return SCAN_INCOMPLETE;
    if (t == '+' || t == '-')
        return e + 2;
    long long n;
    if (parse_ll(p + pos + 1, p + e, &n) < 0)
        return SCAN_BAD;
    if (t == ':')
        return e + 2;
    if (t == '$') {
        if (n == -1)
            return e + 2;
        if (n < 0 || n > RESP_MAX_BULK)
            return SCAN_BAD;
        size_t end = (size_t)e + 2 + (size_t)n + 2;
        if (end > len)
            return SCAN_INCOMPLETE;
        if (p[end - 2] != '\r' || p[end - 1] != '\n')
            return SCAN_BAD;
        return (long long)end;
    }
    if (t == '*') {
        if (n < -1)
            return SCAN_BAD;
        long long at = e + 2;
        for (long long i = 0; i < n; i++) {
            at = scan(p, len, (size_t)at, depth + 1);
            if (at < 0)
                return at;
        }
        return at;
    }
    return SCAN_BAD; /* (not reached: the type was checked first) */
}

/* The reply at *pos (complete: scanned), *pos moved past it. */
static PyObject *build(const char *p, size_t *pos, PyObject *errfactory)
{
    char t = p[*pos];
    long long e = line_end(p, SIZE_MAX, *pos + 1); /* complete: scan() found the CRLF */
    const char *s = p + *pos + 1;
    size_t after = (size_t)e + 2;
    long long n = 0;
    switch (t) {
    case '+':
        *pos = after;
        return PyBytes_FromStringAndSize(s, (Py_ssize_t)(p + e - s));
    case '-': {
        *pos = after;
        PyObject *msg = PyUnicode_DecodeUTF8(s, (Py_ssize_t)(p + e - s), "replace");
        if (!msg)
            return NULL;
        PyObject *err = PyObject_CallOneArg(errfactory, msg);
        Py_DECREF(msg);
        return err;
    }
    case ':':
        parse_ll(s, p + e, &n);
        *pos = after;
        return PyLong_FromLongLong(n);
    case '$':
        parse_ll(s, p + e, &n);
        if (n == -1) {
            *pos = after;
            Py_RETURN_NONE;
        }
        *pos = after + (size_t)n + 2;
        return PyBytes_FromStringAndSize(p + after, (Py_ssize_t)n);
    default: { /* '*' */
        parse_ll(s, p + e, &n);
        *pos = after;
        if (n == -1)
            Py_RETURN_NONE;
        PyObject *list = PyList_New((Py_ssize_t)n);
        if (!list)
            return NULL;
        for (long long i = 0; i < n; i++) {
            PyObject *item = build(p, pos, errfactory);
            if (!item) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, (Py_ssize_t)i, item);
        }
        return list;
    }
    }
}

/* ------------------------------------------------------------------ wire */

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef enum { W_READY, W_TIMEOUT, W_ERRNO, W_SIGNAL } wait_rc;

/* Wait for `events` on fd until `deadline`, the GIL released (*ts holds the
 * saved thread state); a signal runs Python's handlers (with the GIL), and
 * an exception from one ends the wait (W_SIGNAL, the exception set). */
static wait_rc wait_fd(int fd, short events, double deadline, PyThreadState **ts)
{
    for (;;) {
        double left = deadline - mono_now();
        if (left <= 0)
            return W_TIMEOUT;
        double ms = ceil(left * 1000.0);
        struct pollfd pfd = {.fd = fd, .events = events};
        int r = poll(&pfd, 1, ms > INT_MAX ? INT_MAX : (int)ms);
        if (r > 0)
            return W_READY; /* (POLLERR/POLLHUP: the send or recv says what) */
        if (r == 0)
            continue; /* rounding: look at the clock again */
        if (errno != EINTR)
            return W_ERRNO;
        PyEval_RestoreThread(*ts);
        int sig = PyErr_CheckSignals();
        *ts = PyEval_SaveThread();
        if (sig < 0)
            return W_SIGNAL;
    }
}

static PyObject *resp_call(PyObject *m, PyObject *args)
{
    int fd, check;
    Py_buffer data;
    Py_ssize_t n;
    double send_to, recv_to, rcvtimeo = 0;
    PyObject *errfactory;
    if (!PyArg_ParseTuple(args, "iy*nddOp|d:resp_call", &fd, &data, &n, &send_to, &recv_to,
                          &errfactory, &check, &rcvtimeo))
        return NULL;
    if (n < 1) {
        PyBuffer_Release(&data);
        return PyErr_Format(PyExc_ValueError, "resp_call: n must be >= 1, not %zd", n);
    }
    rbuf_t in = {0};
    PyObject *out = NULL;
    const char *what = NULL; /* a ConnectionError's message */
    int err = 0;             /* an OSError's errno */
    wait_rc w = W_READY;
    size_t done = 0, at = 0; /* replies complete, and where the next starts */

    if (rbuf_reserve(&in, 16384) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    PyThreadState *ts = PyEval_SaveThread();
    if (check) {
        char c;
        ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            PyEval_RestoreThread(ts);
            PyBuffer_Release(&data);
            free(in.p);
            Py_RETURN_NONE; /* stale: EOF, stray bytes or an error; nothing sent */
        }
    }
    /* send */
    double deadline = mono_now() + send_to;
    const char *d = data.buf;
    size_t left = (size_t)data.len;
    while (left) {
        ssize_t r = send(fd, d, left, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r > 0) {
            d += r;
            left -= (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            err = errno;
            break;
        }
        w = wait_fd(fd, POLLOUT, deadline, &ts);
        if (w != W_READY) {
            err = errno;
            break;
        }
    }
    /* receive: until n replies are complete */
    deadline = mono_now() + recv_to;
    while (!err && w == W_READY && done < (size_t)n) {
        long long end = SCAN_INCOMPLETE;
        while (done < (size_t)n && (end = scan(in.p, in.len, at, 0)) >= 0) {
            at = (size_t)end;
            done++;
        }
        if (done == (size_t)n)
            break;
        if (end == SCAN_BAD) {
            what = "Protocol error: a reply that is not RESP2";
            break;
        }
        if (in.cap - in.len < 4096) {
            size_t cap = in.cap * 2;
            char *p = realloc(in.p, cap);
            if (!p) {
                what = "out of memory for a reply";
                break;
            }
            in.p = p;
            in.cap = cap;
        }
        /* The replies are rarely there already (the server has just been
         * sent the commands): wait in recv itself when the socket's own
         * timeout (SO_RCVTIMEO = rcvtimeo, the descriptor blocking) is
         * within the time left: one system call, where poll-then-recv is
         * two.  Else (near the deadline, or no such timeout set) poll with
         * the time left, and recv without waiting. */
        int flags = 0;
        if (rcvtimeo <= 0 || deadline - mono_now() < rcvtimeo) {
            w = wait_fd(fd, POLLIN, deadline, &ts);
            if (w != W_READY) {
                if (w == W_ERRNO)
                    err = errno;
                break;
            }
            flags = MSG_DONTWAIT;
        }
        ssize_t r = recv(fd, in.p + in.len, in.cap - in.len, flags);
        if (r > 0) {
            in.len += (size_t)r;
            continue;
        }
        if (r == 0) {
            what = "Connection closed by server.";
            break;
        }
        if (errno == EINTR) {
            /* a signal: run Python's handlers, as a Python socket would */
            PyEval_RestoreThread(ts);
            int sig = PyErr_CheckSignals();
            ts = PyEval_SaveThread();
            if (sig < 0) {
                w = W_SIGNAL;
                break;
            }
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            err = errno;
            break;
        } else if (mono_now() >= deadline) {
            w = W_TIMEOUT; /* (SO_RCVTIMEO ran out with no time left) */
            break;
        }
    }
    PyEval_RestoreThread(ts);
    PyBuffer_Release(&data);
    if (w == W_SIGNAL)
        goto fail; /* the handler's exception is set */
    if (w == W_TIMEOUT) {
        PyErr_SetString(PyExc_TimeoutError, "Timeout reading from socket");
        goto fail;
    }
    if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto fail;
    }
    if (what) {
        PyErr_SetString(PyExc_ConnectionError, what);
        goto fail;
    }
    if (at != in.len) {
        /* bytes past the replies asked for: the stream is out of step */
        PyErr_SetString(PyExc_ConnectionError, "Protocol error: more bytes than replies");
        goto fail;
    }
    out = PyList_New(n);
    if (!out)
        goto fail;
    size_t pos = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = build(in.p, &pos, errfactory);
        if (!item) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, item);
    }
fail:
    free(in.p);
    return out;
}

static PyMethodDef resp_methods[] = {
    {"resp_pack", resp_pack, METH_O,
     "resp_pack(cmds) -> bytes: Redis commands (each a sequence of arguments) in RESP2."},
    {"resp_call", resp_call, METH_VARARGS,
     "resp_call(fd, data, n, send_timeout, recv_timeout, errfactory, check, rcvtimeo=0) "
     "-> list | None: "
     "send packed commands on a connected socket and read n RESP2 replies (see bind_resp.c)."},
    {NULL}};

int il_resp_register(PyObject *m) { return PyModule_AddFunctions(m, resp_methods); }
