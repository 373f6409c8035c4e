/*
 * bind_loan.c -- `_core.Loan`: a pooled spill file lent to the user as a
 * writable buffer, so that a large item is written in place and put
 * without a copy (Queue.loan; docs/design/spill.md, "Loans").
 *
 * A loan is a file of the producer's pool (bind_spillpool.c) taken for the
 * user: its slot is marked (slot->loan) and never written by the pool while
 * the loan lives, sent or not.  The user's buffer is the file from
 * IL_LOAN_HEAD on, through the pool's own mapping (whose pages stay mapped
 * from one loan to the next).  A put whose item pickles to one out-of-band
 * buffer lying in an open loan of the same queue (a numpy array made on
 * it) writes only the lengths and the pickle stream before the buffer
 * (il_msg_prepare -> spill_loaned) and sends the file: the receiver maps it
 * as any pooled file.
 *
 * States (il_loan_t.state): OPEN (the user's) -> PENDING (a put carries it;
 * back to OPEN if that put fails) -> SENT (its record is published:
 * il_spill_link).  A sent loan's memory is the receiver's: the producer
 * must not write it any more (it is documented, not enforced), and the pool
 * does not reuse the file until the loan object goes.
 *
 * All of this is process-local and touched under the GIL, except `state`,
 * which a put may set under plock.
 */
#define _GNU_SOURCE
#include "bind_codec.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    PyObject_HEAD
    il_loan_t ln;
    Py_ssize_t exports;
} LoanObject;

static il_loan_t *live; /* this process's live loans (a fork child inherits copies: pid) */

PyObject *il_loan_object(il_loan_t *ln)
{
    return (PyObject *)((char *)ln - offsetof(LoanObject, ln));
}

il_loan_t *il_loan_of(PyObject *loan) { return &((LoanObject *)loan)->ln; }

il_loan_t *il_loan_find(const il_spill_cfg_t *cfg, const void *buf, uint64_t len)
{
    const char *b = buf;
    pid_t me = getpid();
    for (il_loan_t *ln = live; ln; ln = ln->next) {
        /* relaxed: set under the GIL, which this thread holds */
        if (ln->pid != me || atomic_load_explicit(&ln->state, memory_order_relaxed) != IL_LOAN_OPEN)
            continue;
        const char *lo = ln->claim.addr + ln->off;
        if (b < lo || b > lo + ln->nbytes || len > (uint64_t)(lo + ln->nbytes - b))
            continue;
        /* still its slot's: then the pool is this queue's if the prefix is */
        if (il_pool_loan_valid(ln) && strcmp(il_pool_prefix(ln), cfg->prefix) == 0)
            return ln;
    }
    return NULL;
}

static void Loan_dealloc(LoanObject *self)
{
    il_loan_t *ln = &self->ln;
    if (ln->prev)
        ln->prev->next = ln->next;
    else if (live == ln)
        live = ln->next;
    if (ln->next)
        ln->next->prev = ln->prev;
    il_pool_loan_end(ln);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Loan_getbuffer(LoanObject *self, Py_buffer *view, int flags)
{
    if (!self->ln.claim.addr) {
        PyErr_SetString(PyExc_BufferError, "the loan is over");
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->ln.claim.addr + self->ln.off,
                          (Py_ssize_t)self->ln.nbytes, 0, flags) < 0)
        return -1;
    self->exports++;
    return 0;
}

static void Loan_releasebuffer(LoanObject *self, Py_buffer *view)
{
    (void)view;
    self->exports--;
}

static PyBufferProcs Loan_as_buffer = {
    (getbufferproc)Loan_getbuffer,
    (releasebufferproc)Loan_releasebuffer,
};

static const char *state_name(int st)
{
    return st == IL_LOAN_SENT ? "sent" : st == IL_LOAN_PENDING ? "being put" : "open";
}

static PyObject *Loan_repr(LoanObject *self)
{
    int st = atomic_load_explicit(&self->ln.state, memory_order_relaxed);
    return PyUnicode_FromFormat("<interlock Loan of %llu bytes, %s>",
                                (unsigned long long)self->ln.nbytes, state_name(st));
}

static PyObject *Loan_get_nbytes(LoanObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLongLong(self->ln.nbytes);
}

static PyObject *Loan_get_sent(LoanObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(atomic_load_explicit(&self->ln.state, memory_order_relaxed) ==
                           IL_LOAN_SENT);
}

static PyGetSetDef Loan_getset[] = {
    {"nbytes", (getter)Loan_get_nbytes, NULL, "the buffer's length", NULL},
    {"sent", (getter)Loan_get_sent, NULL, "a put carried it: the memory is the receiver's", NULL},
    {NULL}};

PyTypeObject il_LoanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "interlock._core.Loan",
    .tp_basicsize = sizeof(LoanObject),
    .tp_dealloc = (destructor)Loan_dealloc,
    .tp_repr = (reprfunc)Loan_repr,
    .tp_as_buffer = &Loan_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A queue's pooled spill file lent as a writable buffer (Queue.loan).",
    .tp_getset = Loan_getset,
};

PyObject *il_loan_new(const il_spill_cfg_t *cfg, Py_ssize_t nbytes)
{
    LoanObject *self = PyObject_New(LoanObject, &il_LoanType);
    if (!self)
        return NULL;
    memset(&self->ln, 0, sizeof self->ln);
    self->exports = 0;
    self->ln.claim.fd = -1;
    int got = il_pool_loan_claim(cfg, IL_LOAN_HEAD + (uint64_t)nbytes, &self->ln);
    if (got <= 0) {
        int err = errno;
        self->ln.claim.addr = NULL; /* (nothing to give back) */
        Py_TYPE(self)->tp_free((PyObject *)self);
        if (got < 0) {
            errno = err;
            return PyErr_Format(PyExc_OSError, "no room for a loan of %zd bytes (%s): %s", nbytes,
                                cfg->prefix, strerror(err));
        }
        /* the pool has no room (every file in use, or its byte bound):
         * ordinary memory, which put() copies */
        PyObject *ba = PyByteArray_FromStringAndSize(NULL, nbytes);
        if (!ba)
            return NULL;
        PyObject *mv = PyMemoryView_FromObject(ba);
        Py_DECREF(ba);
        return mv;
    }
    self->ln.off = IL_LOAN_HEAD;
    self->ln.nbytes = (uint64_t)nbytes;
    self->ln.next = live;
    if (live)
        live->prev = &self->ln;
    live = &self->ln;
    PyObject *mv = PyMemoryView_FromObject((PyObject *)self);
    Py_DECREF(self);
    return mv;
}

int il_loan_register(PyObject *m)
{
    if (PyType_Ready(&il_LoanType) < 0)
        return -1;
    Py_INCREF(&il_LoanType);
    if (PyModule_AddObject(m, "Loan", (PyObject *)&il_LoanType) < 0) {
        Py_DECREF(&il_LoanType);
        return -1;
    }
    return PyModule_AddIntConstant(m, "LOAN_HEAD", IL_LOAN_HEAD);
}
