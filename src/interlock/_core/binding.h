/*
 * binding.h -- the one binding layer under every Python type of the core.
 *
 * The algorithm files (platform, mutex, eventcount, ring, sync, aio) do not
 * include Python.h; the bind_*.c files, one per Python type, do, and share
 * what is here, each fact once:
 *
 *   ShmObject        the object every type is: a view of one struct in a
 *                    segment (below);
 *   shm_attach_view  THE check of where a struct lies in a segment (offset
 *                    aligned, inside the buffer, enough bytes);
 *   il_parse_args    the METH_FASTCALL|METH_KEYWORDS argument parser;
 *   il_parse_timeout THE block/timeout parser, with the rules of the stdlib
 *                    call each interlock call stands for (IL_TO_*);
 *   il_spin_until    THE adaptive spin before a futex sleep;
 *   il_report_owner_died  THE owner-death report (`_on_owner_died`);
 *   il_Empty ...     the exception classes, imported once from the Python
 *                    errors module at module init;
 *   IL_SHM_TYPE      THE type object of a ShmObject subtype.
 *
 * GIL: every function here is called with the GIL held, except
 * il_spin_until (called with it released).
 *
 * ShmObject holds a buffer export on the segment's mapping, so the mapping
 * cannot be closed under it.  `busy` counts calls in flight with the GIL
 * released, so that _detach() from another thread cannot unmap under a
 * sleeper.
 *
 * `pid` is the process that uses the object through this handle.  A forked
 * child inherits the handle but holds no slot in the segment's process
 * table (docs/design/segment.md, "Fork"): its first call through the handle
 * finds pid != il_self_pid() (one compare: the pid is cached, reset by
 * pthread_atfork) and calls the Python object's _adopt(), which claims the
 * child's slot.  Types without _adopt (the segment's own meta lock, the
 * deadlock tooling's table locks) just take the new pid.
 */
#ifndef INTERLOCK_BINDING_H
#define INTERLOCK_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "mutex.h"
#include "platform.h"

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    void *p;             /* our struct in the segment; NULL once detached */
    int busy;            /* calls in flight with the GIL released */
    int spin_ns;         /* adaptive spin budget (il_spin_budget) */
    unsigned spin_probe; /* waits since the budget fell to 0 */
    int yield_ns;        /* adaptive yield budget (il_yield_budget) */
    unsigned yield_probe; /* waits since the yield budget fell to 0 */
    uint32_t hint;       /* sync family: index of this process's slot */
    unsigned fruitless;  /* Ring: wakes in a row that woke nobody (il_ec_repair) */
    uint32_t pid;        /* the process using it through this handle (adopted) */
    unsigned char roles; /* Ring: roles told to _note_role by this process (bind_ring.c) */
} ShmObject;

/* ------------------------------------------------------------ the object */

/* Take a writable export of `buffer` and check that a struct may lie at
 * `offset`: a multiple of IL_CACHELINE inside the buffer with at least
 * `need` bytes after it (need 0: any).  Sets self->view and returns the
 * struct's address and, in *have, the bytes from it to the buffer's end;
 * NULL with ValueError (and no export kept) otherwise. */
void *shm_attach_view(ShmObject *self, PyObject *buffer, Py_ssize_t offset, size_t need,
                      size_t *have);
/* shm_attach_view, then make the object live (p, pid, spin budget). */
int shm_attach(ShmObject *self, PyObject *buffer, Py_ssize_t offset, size_t need);
/* Give back the export taken by shm_attach_view (a failed attach). */
void shm_release_view(ShmObject *self);

/* First use in a process that did not make the handle (a fork child). */
int shm_adopt(ShmObject *self);

static inline int shm_check(ShmObject *self)
{
    if (!self->p) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed (detached) interlock object");
        return -1;
    }
    if (__builtin_expect(self->pid != il_self_pid_fast(), 0))
        return shm_adopt(self);
    return 0;
}

PyObject *shm_detach(ShmObject *self, PyObject *unused);
void shm_dealloc(ShmObject *self);
int shm_traverse(ShmObject *self, visitproc visit, void *arg);

/* THE type object of a ShmObject subtype (Ring, Mutex, the sync family):
 * subclassable by the Python layer, GC-tracked for the buffer export. */
#define IL_SHM_TYPE(var, pyname, size, init, methods, members, getset, doc)              \
    PyTypeObject var = {                                                                 \
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "interlock._core." pyname,              \
        .tp_basicsize = size,                                                            \
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,       \
        .tp_doc = doc,                                                                   \
        .tp_new = PyType_GenericNew,                                                     \
        .tp_init = (initproc)init,                                                       \
        .tp_dealloc = (destructor)shm_dealloc,                                           \
        .tp_traverse = (traverseproc)shm_traverse,                                       \
        .tp_methods = methods,                                                           \
        .tp_members = members,                                                           \
        .tp_getset = getset,                                                             \
    }

/* The types, for the module (bind_module.c) and the asyncio helper
 * (bind_aio.c), which must know what an object is. */
extern PyTypeObject il_RingType, il_MutexType, il_SemaphoreType, il_RWLockType, il_EventType,
    il_BarrierType, il_ConditionType;

/* ------------------------------------------------------------ arguments */

/* Minimal METH_FASTCALL|METH_KEYWORDS parser: positional-or-keyword names. */
int il_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                  const char *const *names, int nnames, int required, PyObject **out);

/* THE timeout parser: block/timeout -> *deadline (0: try once, without
 * waiting; IL_FOREVER: no limit; else CLOCK_MONOTONIC ns).  One rule per
 * kind of call, that of the stdlib call it stands for (docs/design/lock.md,
 * "Timeouts").  In every rule: None (or no argument) is forever, +inf is
 * forever (but IL_TO_LOCK: OverflowError), NaN is ValueError, a non-number is TypeError, and the parser
 * runs before the call changes any state. */
enum {
    IL_TO_LOCK,  /* threading.Lock.acquire: -1 forever, other negatives ValueError,
                  * block=False with a timeout other than -1/None ValueError,
                  * over threading.TIMEOUT_MAX (+inf too) OverflowError */
    IL_TO_SEM,   /* multiprocessing.Semaphore.acquire: block=False ignores the
                  * timeout; negative: try once */
    IL_TO_WAIT,  /* Event/Condition/Barrier.wait: negative: try once */
    IL_TO_QUEUE, /* queue.Queue.put/get: block=False ignores the timeout;
                  * negative ValueError "'timeout' must be a non-negative number" */
};
int il_parse_timeout(int rule, PyObject *block, PyObject *timeout, int64_t *deadline);

/* ------------------------------------------------------------ waiting */

/* Adaptive spinning before a futex sleep (every wait of a Ring or of the
 * sync family), per object and process, like glibc's adaptive mutexes: a
 * spin that ended with its condition met restores the full budget, one that
 * ended in a sleep anyway shrinks it by a quarter, down to 0 (after about
 * ten fruitless spins); at 0, one wait in 64 probes with IL_SPIN_MIN_NS.  So
 * two processes on two CPUs hand over in well under a microsecond, and two
 * processes pinned to one CPU (where a spinner only delays the peer) stop
 * spinning after a few waits.  Never with one CPU online.  Budget and adapt
 * with the GIL held (the fields are per object); il_spin_until without. */
#define IL_SPIN_MAX_NS 30000
#define IL_SPIN_MIN_NS 2000

/* One adaptive budget (*ns, the spin's or the yield's): the budget for this
 * wait (at 0, one wait in 64 probes with `min`), and its update after the
 * wait (fruitful: back to `max`; else a quarter less, 0 below `min`). */
static inline int il_budget_take(int *ns, unsigned *probe, int min)
{
    int budget = *ns;
    if (budget == 0 && (++*probe & 63) == 0)
        budget = min;
    return budget;
}

static inline void il_budget_adapt(int *ns, int budget, int fruitful, int max, int min)
{
    if (budget <= 0)
        return;
    *ns = fruitful ? max : budget * 3 / 4 < min ? 0 : budget * 3 / 4;
}

static inline int il_spin_budget(ShmObject *self)
{
    int budget = il_budget_take(&self->spin_ns, &self->spin_probe, IL_SPIN_MIN_NS);
    return il_ncpus() > 1 ? budget : 0;
}

static inline void il_spin_adapt(ShmObject *self, int budget, int fruitful)
{
    il_budget_adapt(&self->spin_ns, budget, fruitful, IL_SPIN_MAX_NS, IL_SPIN_MIN_NS);
}

/* Poll ready(p, arg) for up to budget ns (GIL released); 1 if it held. */
int il_spin_until(int budget, int (*ready)(void *p, uint64_t arg), void *p, uint64_t arg);

/* Yielding, between a fruitless spin and a futex sleep.  Where spinning
 * does not pay (its budget fell to 0, or one CPU online), the peer we wait
 * for most often shares our CPU: a spinner only delays it, and a futex
 * sleep costs the peer a FUTEX_WAKE and us a wake-up, twice per round trip.
 * sched_yield() instead hands the CPU to the peer at once, and the peer's
 * notify finds no sleeper to wake (il_ec_notify: one load).  Measured on
 * two processes pinned to one CPU: see docs/design/queue.md, "Waiting".
 * Bounded like the spin, and adaptive in the same way: a yield phase that
 * ended with its condition met restores the full budget, one that ended in
 * a sleep anyway shrinks it by a quarter, down to 0; at 0, one wait in 64
 * probes with IL_YIELD_MIN_NS.  A yield with nobody else runnable on our
 * CPU returns at once (a spin with a syscall in it), so an idle wait costs
 * at most the budget before it sleeps, and then nothing, once adapted. */
#define IL_YIELD_MAX_NS 50000
#define IL_YIELD_MIN_NS 5000

static inline int il_yield_budget(ShmObject *self, int spin_budget)
{
    if (spin_budget > 0)
        return 0; /* spinning pays (never on one CPU: il_spin_budget is 0 there) */
    return il_budget_take(&self->yield_ns, &self->yield_probe, IL_YIELD_MIN_NS);
}

static inline void il_yield_adapt(ShmObject *self, int budget, int fruitful)
{
    il_budget_adapt(&self->yield_ns, budget, fruitful, IL_YIELD_MAX_NS, IL_YIELD_MIN_NS);
}

/* sched_yield() until ready(p, arg) holds or budget ns pass (GIL
 * released); 1 if it held. */
int il_yield_until(int budget, int (*ready)(void *p, uint64_t arg), void *p, uint64_t arg);

/* Take a mutex (a ring's side lock or a user Mutex): the inline fast path,
 * else il_mutex_lock_counted with the GIL released (deadline 0: try once,
 * with the GIL), running the signal handlers between tries.  Returns IL_OK /
 * IL_OWNER_DIED / IL_TIMEDOUT / IL_DEADLK, or -1 with an exception (a
 * signal handler raised).  *counted: see il_mutex_lock_counted. */
int il_lock_mutex(ShmObject *self, il_mutex_t *m, int64_t deadline, uint32_t *dead, int *counted);
/* The same with il_mutex_lock_flags' flags (IL_MUTEX_SELF_WAIT: Lock). */
int il_lock_mutex_flags(ShmObject *self, il_mutex_t *m, int64_t deadline, uint32_t *dead,
                        int *counted, int flags);

/* ------------------------------------------------------------ reports */

/* A mutex's statistics as a dict (Mutex._stats, Ring._stats's side locks). */
PyObject *il_mutex_stats_dict(il_mutex_t *m);

/* After a take-over from a dead holder (IL_OWNER_DIED): call the object's
 * _on_owner_died(pid) (the Python layer's policy: warn, raise, ignore).  An
 * object without it (a bare _core type, an internal mutex) is silent.
 * Returns 0, or -1 with the exception it raised. */
int il_report_owner_died(PyObject *self, uint32_t dead);

/* The exception classes (interlock's errors module; BrokenBarrierError is
 * threading's). */
extern PyObject *il_Empty, *il_Full, *il_QueueClosed, *il_DeadlockError, *il_BrokenBarrierError;

/* Module init: import the exception classes and intern the names. */
int il_binding_init(PyObject *module);

/* Add every function of `defs` to the module. */
int il_add_functions(PyObject *module, PyMethodDef *defs);

#endif
