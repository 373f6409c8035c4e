/*
 * bind_mutex.c -- the Python type Mutex (interlock._lock.Lock and RLock
 * subclass it): lock.acquire() is one C call.  The algorithm is mutex.h.
 *
 * Tracking (levels, lockdep) and runtime deadlock detection live in
 * Python; off, they cost the fast path one load of `tracked` and one
 * relaxed load of `track_all`.  On, a tracked acquire goes: C acquire ->
 * the Python layer's _tracked_acquire (records the order) -> C
 * _raw_acquire -> after deadlock_timeout of waiting, the wait-for graph
 * (Python), every DEADLOCK_RECHECK_NS.
 */
#include "binding.h"

#include <stdio.h>
#include <unistd.h>
#include <structmember.h>

#include "crashpoint.h"
#include "mutex.h"

typedef struct {
    ShmObject base;
    int recursive;
    /* interlock.Lock: a binary semaphore (multiprocessing's Lock): anyone
     * releases (il_mutex_release_any), and the holder's acquire() waits.
     * Off for RLock and for the internal mutexes (the segment's meta lock,
     * shared tables), which stay owner-checked: there a second acquire by
     * the holder is a bug, reported (DeadlockError), never a wait. */
    int handoff;
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


static inline int is_tracked(MutexObject *self)
{
    /* relaxed: a configuration flag, set before the locks are used */
    return self->tracked || (atomic_load_explicit(&track_all, memory_order_relaxed) &&
                             self->trackable); /* internal mutexes are never tracked */
}

#define MUTEX(self) ((il_mutex_t *)((ShmObject *)(self))->p)

PyObject *il_mutex_stats_dict(il_mutex_t *m)
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
    static char *kw[] = {"buffer", "offset", "create", "recursive", "handoff", NULL};
    PyObject *buffer;
    Py_ssize_t offset;
    int create = 0, recursive = 0, handoff = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On|ppp:Mutex", kw, &buffer, &offset, &create,
                                     &recursive, &handoff))
        return -1;
    if (recursive && handoff) {
        PyErr_SetString(PyExc_ValueError, "a recursive Mutex cannot be released by a non-owner");
        return -1;
    }
    if (shm_attach((ShmObject *)self, buffer, offset, sizeof(il_mutex_t)) < 0)
        return -1;
    self->recursive = recursive;
    self->handoff = handoff;
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
    /* A Lock (not recursive) is a binary semaphore, as multiprocessing's:
     * its holder's acquire() waits like anyone's, until some thread or
     * process releases it (il_mutex_release_any) or the timeout passes. */
    int flags = self->handoff ? IL_MUTEX_SELF_WAIT : 0;
    if (!self->handoff && il_mutex_mine(m, tid)) {
        if (self->recursive) {
            m->depth++;
            return 1;
        }
        if (deadline == 0)
            return 0;
        PyErr_Format(il_DeadlockError,
                     "this thread already holds the lock %R: a second blocking acquire would "
                     "wait forever",
                     (PyObject *)self);
        return -1;
    }
    uint32_t dead = 0;
    int counted = 0; /* one contention per acquisition, however many phases */
    int r;
    /* relaxed: configuration */
    int64_t slice = atomic_load_explicit(&deadlock_ns, memory_order_relaxed);
    if (il_mutex_trylock(m, tid)) {
        r = IL_OK;
    } else if (slice <= 0 || deadline == 0 || !self->trackable) {
        r = il_lock_mutex_flags((ShmObject *)self, m, deadline, &dead, &counted, flags);
    } else {
        /* Wait in phases: after deadlock_timeout, and then every recheck
         * interval, ask the wait-for graph whether we are in a cycle
         * (_waitfor.py); it raises DeadlockError in the one chosen victim. */
        int long_wait = 0;
        for (;;) {
            int64_t now = il_now_ns();
            int64_t phase = deadline - now > slice ? now + slice : deadline;
            r = il_lock_mutex_flags((ShmObject *)self, m, phase, &dead, &counted, flags);
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
    if (r == IL_OWNER_DIED && il_report_owner_died((PyObject *)self, dead) < 0) {
        if (in_enter) { /* `with` never entered: give it back (we hold it) */
            m->depth = 0;
            il_mutex_unlock(m);
        }
        return -1;
    }
    return 1;
}

/* "blocking": threading's name for "block" (lock_tests call
 * acquire(blocking=False)); either may be given, not both. */
static const char *const acquire_names[] = {"block", "timeout", "blocking"};

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
        PyObject *a[3];
        if (nargs > 2) {
            PyErr_Format(PyExc_TypeError,
                         "acquire() takes at most 2 positional arguments (%zd given)", nargs);
            return NULL;
        }
        if (il_parse_args("acquire", args, nargs, kwnames, acquire_names, 3, 0, a) < 0)
            return NULL;
        if (a[2]) {
            if (a[0]) {
                PyErr_SetString(PyExc_TypeError,
                                "acquire() got both 'block' and 'blocking' (the same argument)");
                return NULL;
            }
            a[0] = a[2];
        }
        if (il_parse_timeout(IL_TO_LOCK, a[0], a[1], &deadline) < 0)
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
    if (self->handoff) {
        /* A Lock: anyone may release it (multiprocessing.Lock is a binary
         * semaphore).  `depth` is left alone: it is the owner's field, and
         * the next acquirer sets it (it is shown only while held). */
        if (il_mutex_release_any(m) != IL_OK) {
            PyErr_SetString(PyExc_ValueError, "semaphore or lock released too many times");
            return NULL;
        }
        Py_RETURN_NONE;
    }
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
    il_mutex_unlock_mine(m); /* (checked above) */
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
    return il_mutex_stats_dict(MUTEX(self));
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
static const char *const timeout_names[] = {"timeout"};

static PyObject *Mutex_wait_unlocked(MutexObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
    PyObject *a[1];
    int64_t deadline;
    if (il_parse_args("_wait_unlocked", args, nargs, kwnames, timeout_names, 1, 0, a) < 0 ||
        il_parse_timeout(IL_TO_QUEUE, NULL, a[0], &deadline) < 0 || shm_check((ShmObject *)self) < 0)
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
     "held by a living owner). ``blocking`` is accepted for ``block`` (threading's name).\n\n"
     "A Lock is a binary semaphore, like multiprocessing's: if the calling thread "
     "already holds it, acquire() waits like any other caller until some thread or "
     "process releases it (False after the timeout). An RLock's owner re-enters it.\n\n"
     "Raises:\n"
     "    DeadlockError: with deadlock detection on, this thread was chosen to break a "
     "cycle of waiters.\n"
     "    OwnerDiedError: on_owner_death=\"raise\" and the previous owner died holding "
     "the lock: the caller *holds* the lock when this is raised.\n"
     "    LockOrderError: the lock's level is against the levels of the locks held.\n"
     "    ValueError: a timeout with block=False, a negative timeout other than -1, "
     "or NaN.\n"
     "    OverflowError: a timeout over threading.TIMEOUT_MAX (or infinite).\n\n"
     "If a process dies: if the owner (process or thread) died holding the lock, "
     "acquire() takes it over within about 50 ms (at once with block=False) and issues "
     "OwnerDiedWarning (or raises OwnerDiedError, or nothing: on_owner_death). What "
     "the dead owner was updating may be half done."},
    {"release", (PyCFunction)Mutex_release, METH_NOARGS,
     "release($self, /)\n--\n\n"
     "Release the lock (an RLock: one level of it). A Lock may be released by any "
     "thread of any process, not only the one that acquired it (multiprocessing's "
     "hand-off); an RLock only by its owner.\n\n"
     "Raises:\n"
     "    ValueError: a Lock that is not held (\"semaphore or lock released too many "
     "times\", as multiprocessing).\n"
     "    RuntimeError: an RLock not held by the calling thread.\n\n"
     "If a process dies: if the thread that acquired a Lock dies before anyone "
     "released it, the next acquire() takes it over, as above."},
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

IL_SHM_TYPE(il_MutexType, "Mutex", sizeof(MutexObject), Mutex_init, Mutex_methods,
            Mutex_members, NULL,
            "Mutex(buffer, offset, create=False, recursive=False, handoff=False)\n\n"
            "A robust process-shared mutex over a writable buffer (see mutex.h). Used "
            "through interlock.Lock and interlock.RLock.");

int il_mutex_binding_init(void)
{
    str_tracked_acquire = PyUnicode_InternFromString("_tracked_acquire");
    str_tracked_release = PyUnicode_InternFromString("_tracked_release");
    str_tracked_enter = PyUnicode_InternFromString("_tracked_enter");
    str_on_long_wait = PyUnicode_InternFromString("_on_long_wait");
    str_end_long_wait = PyUnicode_InternFromString("_end_long_wait");
    return str_tracked_acquire && str_tracked_release && str_tracked_enter && str_on_long_wait &&
                   str_end_long_wait
               ? 0
               : -1;
}

PyObject *il_mod_set_tracking(PyObject *m, PyObject *args)
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
