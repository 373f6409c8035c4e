/*
 * bind_ring.c -- the Python type Ring (interlock._queue.Queue subclasses it).
 *
 * q.put(x) and q.get() are one C call with no Python frame in between.  The
 * Python layer owns the segment (naming, lifetime, pickling by name) and
 * hands us a writable buffer (an mmap) and the offset of our struct in it.
 *
 * GIL: held on every fast path (no syscall, no wait).  Released only to wait
 * (spin, then futex) and re-taken to finish the operation.  Nothing that may
 * run Python code (pickling, unpickling, garbage collection through the
 * allocation of GC-tracked objects) happens while a ring lock is held: a
 * finalizer that used the same queue would otherwise deadlock on itself.
 * The message codec is bind_codec.c; the shared plumbing binding.c.
 */
#include "bind_codec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crashpoint.h"
#include "ring.h"

/* Upper bound of one sleep: a notifier killed between its publish and its
 * wake-up costs sleepers at most this much. */
#define WAIT_SLICE_NS 100000000LL

/* ================================================================= Ring */

typedef struct {
    ShmObject base;
    /* close() on this object (multiprocessing's "this process puts no
     * more"): 0 open; else put and get through this object raise at once
     * (CLOSED_VALUE: ValueError "Queue <...> is closed", as
     * multiprocessing.Queue; CLOSED_OS: OSError "handle is closed", as
     * multiprocessing.SimpleQueue).  Process-local: the shared ring and
     * other processes' objects are not touched. */
    unsigned char closed_here;
    int ovf;              /* the queue is unbounded (IL_RING_OVERFLOW; read once, at init) */
    il_spill_cfg_t spill; /* per handle: set by Queue through _set_spill (spill.md) */
    uint64_t last_need;   /* bytes of the last ring record this handle took (ring_wait) */
} RingObject; /* base.roles: 1: this object has put, 2: has got (told to _note_role once) */

enum { CLOSED_VALUE = 1, CLOSED_OS = 2 };

/* The one check of closed_here, at the entry of every put and get: one
 * predictable branch. */
static inline int check_open(RingObject *self)
{
    if (__builtin_expect(!self->closed_here, 1))
        return 0;
    if (self->closed_here == CLOSED_OS)
        PyErr_SetString(PyExc_OSError, "handle is closed");
    else
        PyErr_Format(PyExc_ValueError, "Queue %R is closed", (PyObject *)self);
    return -1;
}

static PyObject *str_note_role; /* interned at init: il_ring_init */

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


/* ------------------------------------------------------------ waiting */

typedef int (*cond_fn)(void *r, uint64_t arg);

static int cond_not_empty(void *r, uint64_t unused) { return il_ring_readable((il_ring_t *)r); }

static int cond_room(void *r, uint64_t need) { return il_ring_writable((il_ring_t *)r, need); }

static int cond_all_done(void *p, uint64_t unused)
{
    return il_ring_unfinished((il_ring_t *)p) <= 0;
}

/* Notify after a publish.  Notifies that find a waiter counted but nobody
 * asleep are normal now and then (a waiter between its prepare and its
 * FUTEX_WAIT, or woken and not run yet: then the first one's FUTEX_WAKE
 * finds nobody and disarms, the next make no syscall, eventcount.h), but
 * thousands in a row mean a waiter died counted: repair the count
 * (eventcount.h), which ends them.  With the GIL held (`fruitless` is per
 * object). */
#define FRUITLESS_REPAIR 4096

static inline void ring_notify(ShmObject *self, il_eventcount_t *ec, int n)
{
    int woke = il_ec_notify_armed(ec, n);
    if (woke > 0) {
        self->fruitless = 0;
    } else if (woke != -1 && ++self->fruitless >= FRUITLESS_REPAIR) {
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
    int budget = il_spin_budget(self);
    /* Room for a large record is made by a consumer copying a large record
     * out: about 1 ns per 8 bytes here, 130 us for 1 MiB, longer than the
     * whole spin budget.  A producer that spun only the budget slept on
     * every large item and cost the consumer a wake-up each time (put_many
     * of 1 MiB arrays at half the speed of put(); 800 sleeps in 4,000
     * items).  So while spinning pays at all (budget > 0: the adaptation
     * below still turns it off on one CPU), a wait for room spins as long
     * as the copy that makes that room should take, up to 250 us more. */
    int spin = budget;
    if (budget > 0 && cond == cond_room)
        spin += (int)(arg >> 3 < 250000 ? arg >> 3 : 250000);
    /* The same for a consumer: the next record is made by a producer
     * copying it in, and its size is most likely that of the last one this
     * handle took.  A consumer of 1 MiB arrays that spun only the budget
     * slept on one item in five in some runs, and the run went at 0.8x. */
    if (budget > 0 && cond == cond_not_empty) {
        uint64_t last = ((RingObject *)self)->last_need;
        spin += (int)(last >> 3 < 250000 ? last >> 3 : 250000);
    }
    int ybudget = il_yield_budget(self, budget);
    int done, yielded = 0;
    int slept = 0; /* the last il_ec_sleep returned IL_OK (woken or EAGAIN) */
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    done = il_spin_until(spin, cond, r, arg);
    if (!done)
        done = yielded = il_yield_until(ybudget, cond, r, arg);
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
        if (!il_ec_arm(ec, &key)) {
            /* seq moved: check again (still counted) */
            il_ec_cancel(ec);
            continue;
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
    il_spin_adapt(self, budget, done && !yielded);
    il_yield_adapt(self, ybudget, yielded);
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
    int r = il_lock_mutex((ShmObject *)self, m, deadline, NULL, &counted);
    if (r == IL_OK || r == IL_OWNER_DIED)
        return 0; /* a dead holder left the ring consistent (ring.h) */
    if (r == IL_TIMEDOUT)
        return 1;
    if (r == IL_DEADLK)
        PyErr_SetString(PyExc_RuntimeError,
                        "re-entrant use of an interlock queue from inside its own operation");
    return -1;
}

static PyObject *raise_shut_down(const char *what)
{
    PyErr_Format(il_QueueClosed, "%s on a shut-down queue", what);
    return NULL;
}

/* ------------------------------------------------------------ overflow */

/* An unbounded queue (IL_RING_OVERFLOW, docs/design/overflow.md): when the
 * ring is full, records go on into block files of r->size bytes, named by
 * block number (pos / size, mod 2^32 / size), and stay there in FIFO order
 * (a producer puts into the ring again only once the overflow is drained;
 * a consumer takes from the ring first, and from the overflow only when the
 * ring is empty).  Blocks are written with pwrite and read with pread
 * through a descriptor opened for the call: no mapping or descriptor is
 * kept between calls. */

static inline int ovf_on(RingObject *self) { return self->ovf; }

/* A handle of an unbounded queue must know where its blocks are (Queue
 * sets it: _set_spill) before it puts or gets: one that did not would put
 * into the ring past the overflow's items.  0, or -1 with an exception. */
static int ovf_check(RingObject *self)
{
    if (__builtin_expect(ovf_on(self) && !self->spill.prefix[0], 0)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this handle of an unbounded interlock queue has no spill directory "
                        "(use interlock.Queue, not _core.Ring)");
        return -1;
    }
    return 0;
}

static inline unsigned ovf_shift(il_ring_t *r) { return (unsigned)__builtin_ctzll(r->size); }

static void ovf_path(RingObject *self, uint32_t blk, char *out, size_t n)
{
    snprintf(out, n, "%sovf.%u", self->spill.prefix, blk);
}

/* Is `fd` a file of ours as we make them (regular, our uid, mode 0600)? */
static int ovf_ours(int fd, uint64_t size)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
           !(st.st_mode & 077) && (size == 0 || (uint64_t)st.st_size == size);
}

/* Under plock: open block blk for writing into *fd (kept for the batch);
 * `fresh`: the tail is at its start, so make it (or reuse what a producer
 * killed before publishing left under that name) and reserve its pages.
 * 0, or -1 with errno (ENOSPC: /dev/shm is full; nothing was published). */
static int ovf_open_w(RingObject *self, il_ring_t *r, uint32_t blk, int fresh, int *fd,
                      uint32_t *fdblk)
{
    if (*fd >= 0 && *fdblk == blk && !fresh)
        return 0;
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
    char path[IL_SPILL_PATH_MAX];
    ovf_path(self, blk, path, sizeof path);
    int f;
    if (!fresh) {
        f = open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (f < 0)
            return -1;
    } else {
        /* counted before it exists, as a spill file (the last user's
         * cleanup lists the directory only if the count is not 0); relaxed:
         * see il_spill_link */
        atomic_fetch_add_explicit(&r->spilled, 1, memory_order_relaxed);
        f = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
        if (f < 0)
            return -1;
        int err = 0;
        if (!ovf_ours(f, 0))
            err = EPERM; /* planted by someone else: never written to, never removed */
        else if (ftruncate(f, (off_t)r->size) < 0)
            err = errno;
        else
            err = posix_fallocate(f, 0, (off_t)r->size);
        if (err) {
            if (err != EPERM)
                unlink(path); /* nothing published refers to it */
            close(f);
            errno = err;
            return -1;
        }
        IL_CRASH(RING_OVF_CREATED);
    }
    *fd = f;
    *fdblk = blk;
    return 0;
}

/* Under plock: room in the overflow for a record of `need` bytes (and a
 * block's unused end)?  acquire: as il_ring_room. */
static inline int ovf_room(il_ring_t *r, uint64_t ot, uint64_t need)
{
    uint64_t oh = atomic_load_explicit(&r->ohead, memory_order_acquire);
    return (uint64_t)(uint32_t)(IL_POS(ot) - IL_POS(oh)) + need + r->size <= il_ovf_span_max(r);
}

/* Under plock: write m at the overflow's tail *ot (not published: the
 * caller's store to otail is the commit).  A record never straddles two
 * blocks: when it does not fit in the rest of one, an IL_REC_NEXT header
 * there sends the reader to the next.  0, or -1 with errno. */
static int ovf_append(RingObject *self, il_ring_t *r, uint64_t *ot, msg_t *m, int *fd,
                      uint32_t *fdblk)
{
    uint64_t size = r->size;
    unsigned sh = ovf_shift(r);
    uint32_t pos = IL_POS(*ot);
    uint32_t off = pos & (uint32_t)(size - 1);
    if (m->need > size - 8) { /* (a record above the spill threshold never comes here) */
        errno = EMSGSIZE;
        return -1;
    }
    if (off + m->need > size - 8) {
        /* off <= size - 8 always (records end there at most): room for it */
        il_rec_t next = {0, IL_REC_NEXT, 0, 0};
        if (ovf_open_w(self, r, pos >> sh, off == 0, fd, fdblk) < 0)
            return -1;
        int err = il_write_all(*fd, &next, sizeof next, off);
        if (err) {
            errno = err;
            return -1;
        }
        pos += (uint32_t)(size - off);
        off = 0;
    }
    if (ovf_open_w(self, r, pos >> sh, off == 0, fd, fdblk) < 0)
        return -1;
    if (il_spill_link(r, m) < 0)
        return -1;
    unsigned char small[256];
    unsigned char *buf = m->need <= sizeof small ? small : PyMem_RawMalloc((size_t)m->need);
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    il_msg_serialize(m, buf);
    int err = il_write_all(*fd, buf, m->need, off);
    if (buf != small)
        PyMem_RawFree(buf);
    if (err) {
        errno = err;
        return -1;
    }
    *ot = IL_PACK(IL_CNT(*ot) + 1, pos + (uint32_t)m->need);
    return 0;
}

/* A batch taken by one get_many() ends once its records come to this many
 * bytes (always at least one record).  Why: the batch's objects are
 * allocated together and freed together; glibc's free() gives the top of
 * the heap back to the kernel once more than its trim threshold (128 KiB,
 * or twice the largest mmap'd block freed so far) lies free there, and the
 * next batch faults every page in again, zero-filled.  get_many(16) of
 * 64 KiB items ran at a fifth of the speed of 16 get()s (measured: 45 k/s
 * against 230 k/s); with the budget a batch costs no more per item than
 * single gets at any size, and small items still come 1024 at a time.
 * (Not a limit for get(): max is 1 there.) */
#define IL_BATCH_BYTES (256u << 10)

/* What a taken record counts against IL_BATCH_BYTES: its bytes in the
 * queue, and a spilled item's file too (a batch of 1 MiB arrays is one
 * array, as get(): the consumer holding eight at once kept the producer's
 * pool of files cycling through eight more, cold in cache). */
static inline uint64_t batch_bytes(uint64_t need, const raw_t *x)
{
    return need + (x->kind == IL_REC_SPILL ? x->ref.size : 0);
}

/* Under clock: take up to max records (and IL_BATCH_BYTES) from the overflow, from *oh up to
 * ot (published), into out[]; *oh moves past them (and past the ends of
 * the blocks it leaves).  Returns the count; an error leaves an exception
 * and stops at the record that caused it (not taken). */
static Py_ssize_t ovf_take(RingObject *self, il_ring_t *r, uint64_t *oh, uint64_t ot,
                           raw_t *out, Py_ssize_t max)
{
    uint64_t size = r->size;
    unsigned sh = ovf_shift(r);
    int fd = -1;
    uint32_t fdblk = 0;
    unsigned char small[256];
    unsigned char *buf = small;
    Py_ssize_t k = 0;
    char path[IL_SPILL_PATH_MAX];
    uint64_t bytes = 0; /* the batch's budget, as in ring_take (IL_BATCH_BYTES) */
    while (k < max && bytes < IL_BATCH_BYTES && *oh != ot) {
        uint32_t pos = IL_POS(*oh);
        uint32_t off = pos & (uint32_t)(size - 1), blk = pos >> sh;
        uint32_t rem = IL_POS(ot) - pos, inblk = (uint32_t)(size - off);
        uint32_t avail = rem < inblk ? rem : inblk;
        if (fd < 0 || fdblk != blk) {
            if (fd >= 0)
                close(fd);
            ovf_path(self, blk, path, sizeof path);
            fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
            if (fd < 0 || !ovf_ours(fd, size)) {
                PyErr_Format(PyExc_RuntimeError,
                             "interlock queue is corrupt: its overflow block %s is %s",
                             path, fd < 0 ? "gone" : "not the queue's");
                break;
            }
            fdblk = blk;
        }
        il_rec_t rec;
        int err = avail < sizeof rec ? EIO : il_read_all(fd, &rec, sizeof rec, off);
        if (!err && rec.kind == IL_REC_NEXT) {
            *oh = IL_PACK(IL_CNT(*oh), pos + inblk); /* no record: the count stays */
            continue;
        }
        uint64_t need = IL_ALIGN8(sizeof rec + (uint64_t)rec.len);
        if (!err && need > avail)
            err = EIO;
        if (!err && need > sizeof small) {
            if (buf != small)
                PyMem_RawFree(buf);
            buf = PyMem_RawMalloc((size_t)need);
            if (!buf) {
                buf = small;
                PyErr_NoMemory();
                break;
            }
        }
        if (!err)
            err = il_read_all(fd, buf, need, off);
        if (err) {
            PyErr_Format(PyExc_RuntimeError,
                         "interlock queue is corrupt: overflow record at %u unreadable (%s)",
                         pos, strerror(err));
            break;
        }
        if (!il_raw_read_linear(buf, (uint32_t)need, size, &out[k])) {
            il_raw_clear(&out[k]);
            break;
        }
        *oh = IL_PACK(IL_CNT(*oh) + 1, pos + (uint32_t)need);
        bytes += batch_bytes(need, &out[k]);
        k++;
    }
    if (fd >= 0)
        close(fd);
    if (buf != small)
        PyMem_RawFree(buf);
    return k;
}

/* After the store to ohead: remove the blocks the consumer left behind,
 * from the one of old to the one before new. */
static void ovf_drop_passed(RingObject *self, il_ring_t *r, uint64_t old, uint64_t now)
{
    unsigned sh = ovf_shift(r);
    uint32_t b = IL_POS(old) >> sh, end = IL_POS(now) >> sh;
    uint32_t mask = (uint32_t)((1ull << (32 - sh)) - 1);
    if (b == end)
        return;
    IL_CRASH(RING_OVF_PASSED);
    char path[IL_SPILL_PATH_MAX];
    for (; b != end; b = (b + 1) & mask) {
        ovf_path(self, b, path, sizeof path);
        unlink(path);
    }
}

/* The overflow side of one put call under plock (ring_put_msgs). */
typedef struct {
    int have;            /* otail was read */
    int err;             /* errno of a failed append: the batch stops there */
    uint64_t otail, ot;  /* as read; after the appends (published by the caller) */
} ovf_put_t;

/* ovf_busy is set: is the overflow still in use?  (If not, clear the hint:
 * back to the ring.)  relaxed: otail is written under plock only. */
static __attribute__((noinline)) int ovf_put_start(il_ring_t *r, ovf_put_t *o)
{
    o->otail = o->ot = atomic_load_explicit(&r->otail, memory_order_relaxed);
    o->have = 1;
    if (il_ovf_busy(r, o->ot))
        return 1;
    r->ovf_busy = 0;
    return 0;
}

/* Append m[k..n) to the overflow, as room allows (all or nothing: all or
 * none).  Returns the new k; o->ot is the tail to publish. */
static __attribute__((noinline)) Py_ssize_t ovf_put_from(RingObject *self, il_ring_t *r,
                                                         msg_t *m, Py_ssize_t k, Py_ssize_t n,
                                                         int all_or_nothing, ovf_put_t *o)
{
    if (!o->have) {
        o->otail = o->ot = atomic_load_explicit(&r->otail, memory_order_relaxed);
        o->have = 1;
    }
    int fd = -1;
    uint32_t fdblk = 0;
    if (all_or_nothing) {
        uint64_t total = 0;
        for (Py_ssize_t i = k; i < n; i++)
            total += m[i].need + 8u; /* (+ a block's end, at most one per record) */
        if (!ovf_room(r, o->ot, total))
            return k;
    }
    for (; k < n; k++) {
        if (!all_or_nothing && !ovf_room(r, o->ot, m[k].need))
            break;
        r->ovf_busy = 1; /* before otail is published: see ring.h */
        if (ovf_append(self, r, &o->ot, &m[k], &fd, &fdblk) < 0) {
            o->err = errno;
            break;
        }
    }
    if (fd >= 0)
        close(fd);
    return k;
}

/* ------------------------------------------------------------ put */

/* Put the prepared messages m[0..n); blocking per deadline.  Returns the
 * number put (== n on success); on failure sets an exception. */
static Py_ssize_t ring_put_msgs(RingObject *self, msg_t *m, Py_ssize_t n, int64_t deadline,
                                int all_or_nothing)
{
    il_ring_t *r = RING(self);
    Py_ssize_t done = 0;
    if (ovf_check(self) < 0)
        return 0;
    while (done < n) {
        int lr = ring_lock_side(self, &r->plock, deadline);
        if (lr < 0)
            return done;
        if (lr == 1) {
            PyErr_SetString(il_Full, "timed out waiting for the queue's producer lock");
            return done;
        }
        IL_CRASH(RING_PUT_LOCKED);
        /* relaxed: under plock, tail was last written by a plock holder,
         * ordered by the lock's acquire. */
        uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
        uint64_t t = tail;
        Py_ssize_t k = done;
        /* The overflow (unbounded queues): once anything is there, every put
         * goes there too until consumers drain it, so FIFO holds across the
         * two (overflow.md, rule P).  Out of line: the ring's path stays as
         * it was, plus one test of a word on this cache line. */
        ovf_put_t o;
        o.have = 0;
        o.err = 0;
        int use_ovf = self->ovf && r->ovf_busy && ovf_put_start(r, &o);
        /* relaxed: flags is set under plock (Ring_shutdown), ordered by
         * the lock's acquire like tail. */
        if (atomic_load_explicit(&r->flags, memory_order_relaxed) & IL_RING_SHUTDOWN) {
            il_mutex_unlock(&r->plock);
            raise_shut_down("put()");
            return done;
        }
        /* A spilled message's file is named (il_spill_link) right before
         * its record is written: a failure to name it ends the batch there,
         * after publishing what is written before it. */
        int link_errno = 0;
        int budget_hit = 0; /* this round ended at IL_BATCH_BYTES, with room left */
        if (!use_ovf) {
            if (all_or_nothing) {
                uint64_t total = 0;
                for (Py_ssize_t i = 0; i < n; i++)
                    total += m[i].need;
                if (il_ring_room(r, t, total, (uint32_t)n)) {
                    for (; k < n; k++) {
                        if ((m[k].spill_fd >= 0 || m[k].pooled) && il_spill_link(r, &m[k]) < 0) {
                            link_errno = errno;
                            break;
                        }
                        t = IL_PACK(IL_CNT(t) + 1, il_msg_write(r, IL_POS(t), &m[k]));
                    }
                }
            } else {
                /* Published every IL_BATCH_BYTES: a batch of large records
                 * written whole before one publication left the consumer
                 * idle while the producer copied megabytes, and then the
                 * producer idle while the consumer copied them out (put_many
                 * of 1 MiB arrays at 0.7x the speed of put(), which hands
                 * each record on as soon as it is written).  The loop goes
                 * round (publish, unlock, notify, lock) and goes on. */
                uint64_t bytes = 0;
                while (k < n && il_ring_room(r, t, m[k].need, 1)) {
                    if (bytes >= IL_BATCH_BYTES) {
                        budget_hit = 1;
                        break;
                    }
                    if ((m[k].spill_fd >= 0 || m[k].pooled) && il_spill_link(r, &m[k]) < 0) {
                        link_errno = errno;
                        break;
                    }
                    t = IL_PACK(IL_CNT(t) + 1, il_msg_write(r, IL_POS(t), &m[k]));
                    bytes += m[k].need;
                    k++;
                }
            }
        }
        /* the rest (all of an all-or-nothing batch that the ring cannot
         * take; not what waits only for the next round of a long batch) */
        if (__builtin_expect(k < n && !link_errno && !budget_hit && self->ovf, 0))
            k = ovf_put_from(self, r, m, k, n, all_or_nothing, &o);
        int ovf_errno = o.err;
        if (k > done) {
            IL_CRASH(RING_PUT_PAYLOAD);
            /* The commit point.  release: the records' bytes are visible to
             * any consumer that acquire-loads this tail. */
            atomic_store_explicit(&r->tail, t, memory_order_release); /* (unchanged if
                                                                      * all went to the overflow) */
            /* The overflow's, after the ring's: a consumer that sees these
             * records (acquire on otail) and then reads tail sees every ring
             * record put before them.  release: the records were written
             * (pwrite) before; a consumer's pread after its acquire load of
             * otail sees them (the page cache is coherent). */
            if (o.have && o.ot != o.otail) {
                atomic_store_explicit(&r->otail, o.ot, memory_order_release);
                /* relaxed: a statistic */
                atomic_fetch_add_explicit(&r->ovf_items, IL_CNT(o.ot) - IL_CNT(o.otail),
                                          memory_order_relaxed);
            }
            IL_CRASH(RING_PUT_PUBLISHED);
        }
        il_mutex_unlock(&r->plock);
        int progress = k > done;
        if (progress) {
            IL_CRASH(RING_PUT_UNLOCKED);
            ring_notify((ShmObject *)self, &r->not_empty, (int)(k - done));
            done = k;
        }
        if (link_errno) {
            errno = link_errno;
            PyErr_SetFromErrnoWithFilename(PyExc_OSError, m[k].spill_path);
            return done;
        }
        if (__builtin_expect(ovf_errno, 0)) {
            char msg[200];
            snprintf(msg, sizeof msg,
                     "cannot grow the queue's overflow in /dev/shm: %s; the item was not put",
                     strerror(ovf_errno));
            PyObject *args = Py_BuildValue("(is)", ovf_errno, msg);
            if (args) {
                PyErr_SetObject(PyExc_OSError, args);
                Py_DECREF(args);
            }
            return done;
        }
        if (progress)
            continue;
        if (deadline == 0) {
            PyErr_SetString(il_Full, all_or_nothing && n > 1
                                      ? "not enough room in the queue for the whole batch"
                                      : "queue is full");
            return done;
        }
        int w = ring_wait((ShmObject *)self, &r->not_full, cond_room, m[done].need, deadline,
                           NULL);
        if (w < 0)
            return done;
        if (w == IL_TIMEDOUT) {
            PyErr_SetString(il_Full, "queue is full (timed out)");
            return done;
        }
    }
    return done;
}

static const char *const put_names[] = {"obj", "block", "timeout"};

/* il_msg_prepare (later: il_msg_prepare_batch), counted as a call in flight (`busy`): a spilled item is
 * copied with the GIL released (and pickling runs Python code), and a
 * detach of this handle meanwhile would leave the put with no ring. */
static int prepare_item(RingObject *self, PyObject *obj, msg_t *m, int later)
{
    ((ShmObject *)self)->busy++;
    int rc = later ? il_msg_prepare_batch(RING(self), &self->spill, obj, m)
                   : il_msg_prepare(RING(self), &self->spill, obj, m);
    ((ShmObject *)self)->busy--;
    return rc;
}

/* il_msg_spill of an item prepare_item(later) left unwritten, counted as
 * a call in flight as above (the copy runs with the GIL released). */
static int spill_item(RingObject *self, msg_t *m)
{
    ((ShmObject *)self)->busy++;
    int rc = il_msg_spill(RING(self), &self->spill, m);
    ((ShmObject *)self)->busy--;
    return rc;
}

static PyObject *Ring_put(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
    PyObject *a[3];
    int64_t deadline;
    if (nargs == 1 && !kwnames) {
        a[0] = args[0];
        deadline = IL_FOREVER;
    } else {
        if (il_parse_args("put", args, nargs, kwnames, put_names, 3, 1, a) < 0 ||
            il_parse_timeout(IL_TO_QUEUE, a[1], a[2], &deadline) < 0)
            return NULL;
    }
    if (shm_check((ShmObject *)self) < 0 || check_open(self) < 0)
        return NULL;
    msg_t m;
    if (prepare_item(self, a[0], &m, 0) < 0)
        return NULL;
    Py_ssize_t k = ring_put_msgs(self, &m, 1, deadline, 0);
    il_msg_release(&m);
    if (k != 1)
        return NULL;
    note_role(self, 1);
    Py_RETURN_NONE;
}

static PyObject *Ring_put_nowait(RingObject *self, PyObject *obj)
{
    if (shm_check((ShmObject *)self) < 0 || check_open(self) < 0)
        return NULL;
    msg_t m;
    if (prepare_item(self, obj, &m, 0) < 0)
        return NULL;
    Py_ssize_t k = ring_put_msgs(self, &m, 1, 0, 0);
    il_msg_release(&m);
    if (k != 1)
        return NULL;
    note_role(self, 1);
    Py_RETURN_NONE;
}

/* ring_put_msgs with an exception already set (an item after these failed
 * to be written): that exception is raised, unless this put raises its own
 * (Full, ShutDown: it stopped before the failed item).  Returns how many
 * were put. */
static Py_ssize_t ring_put_msgs_keeping(RingObject *self, msg_t *m, Py_ssize_t n,
                                        int64_t deadline)
{
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    Py_ssize_t k = ring_put_msgs(self, m, n, deadline, 0);
    if (PyErr_Occurred()) {
        /* this put's own error (Full, ShutDown) comes first: it stopped
         * earlier than the failed item */
        Py_XDECREF(et);
        Py_XDECREF(ev);
        Py_XDECREF(etb);
    } else {
        PyErr_Restore(et, ev, etb);
    }
    return k;
}

static const char *const put_many_names[] = {"items", "block", "timeout"};

static PyObject *Ring_put_many(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    PyObject *a[3];
    int64_t deadline;
    if (il_parse_args("put_many", args, nargs, kwnames, put_many_names, 3, 1, a) < 0 ||
        il_parse_timeout(IL_TO_QUEUE, a[1], a[2], &deadline) < 0 || shm_check((ShmObject *)self) < 0 ||
        check_open(self) < 0)
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
    /* Every item pickled first: an unpicklable one puts nothing.  With
     * block=False (all or nothing) every spill file is written too, before
     * the room for all of them is checked. */
    int all_or_nothing = deadline == 0, later = 0;
    for (; prepared < n; prepared++) {
        if (prepare_item(self, items[prepared], &m[prepared], !all_or_nothing) < 0)
            goto out;
        later |= m[prepared].spill_later;
    }
    if (!later) {
        put = ring_put_msgs(self, m, n, deadline, all_or_nothing);
    } else {
        /* Items for spill files: written and published a chunk at a time
         * (IL_BATCH_BYTES of items, at least one), so that the consumer
         * takes the first while the producer copies the next, as with
         * put().  Written all before one publication, eight 1 MiB arrays
         * left the consumer idle for eight copies and the producer's pooled
         * files cold in cache (put_many at 0.83x the rate of put() per
         * item in bench_goals).  A process killed midway leaves a prefix,
         * each item whole, as before. */
        Py_ssize_t done = 0;
        while (done < n) {
            Py_ssize_t end = done;
            uint64_t bytes = 0;
            while (end < n && (end == done || bytes < IL_BATCH_BYTES))
                bytes += m[end++].need;
            for (Py_ssize_t i = done; i < end; i++) {
                if (spill_item(self, &m[i]) < 0) {
                    /* publish the chunk's items before the one that failed */
                    if (i > done)
                        put += ring_put_msgs_keeping(self, m + done, i - done, deadline);
                    goto out;
                }
            }
            Py_ssize_t k = ring_put_msgs(self, m + done, end - done, deadline, 0);
            put += k;
            if (k < end - done)
                break;
            done = end;
        }
    }
    if (put > 0)
        note_role(self, 1);
out:
    for (Py_ssize_t i = 0; i < prepared; i++)
        il_msg_release(&m[i]);
    PyMem_Free(m);
    Py_DECREF(seq);
    if (PyErr_Occurred()) {
        if (put > 0 && (PyErr_ExceptionMatches(il_Full) || PyErr_ExceptionMatches(PyExc_OSError))) {
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

/* Under clock: take ring records from *h into out[k..max), up to
 * IL_BATCH_BYTES of records.  Returns the new k; stops at a record that
 * fails (exception set, not taken). */
static inline Py_ssize_t ring_take(il_ring_t *r, uint64_t *h, raw_t *out, Py_ssize_t k,
                                   Py_ssize_t max, uint64_t *last_need)
{
    uint64_t bytes = 0, last = 0;
    while (k < max && bytes < IL_BATCH_BYTES && il_ring_has_data(r, *h)) {
        /* r->cached_tail: the tail il_ring_has_data just found ahead of h */
        uint64_t need = il_raw_read(r, IL_POS(*h), IL_POS(r->cached_tail) - IL_POS(*h), &out[k]);
        if (!need) {
            il_raw_clear(&out[k]);
            break;
        }
        *h = IL_PACK(IL_CNT(*h) + 1, IL_POS(*h) + (uint32_t)need);
        /* A spilled item's producer copies it into its file, not into the
         * ring: the wait for the next one is that copy's (ring_wait). */
        last = batch_bytes(need, &out[k]);
        bytes += last;
        k++;
    }
    if (last)
        *last_need = last; /* the last record taken (ring_wait's consumer spin) */
    return k;
}

/* Under clock, the ring found empty: the overflow's tail, then the ring's
 * again (a fresh load: cached_tail is h now).  If the ring is still empty,
 * no ring record is older than the overflow's first (a producer publishes
 * the ring before the overflow), so take from the overflow, up to that
 * tail.  Returns the count taken (from the ring, or from the overflow with
 * *ohead / *oh its head before and after). */
static __attribute__((noinline)) Py_ssize_t ovf_get(RingObject *self, il_ring_t *r, uint64_t *h,
                                                    raw_t *out, Py_ssize_t max, uint64_t *ohead,
                                                    uint64_t *oh)
{
    /* acquire: the overflow's records up to it were written before */
    uint64_t ot = atomic_load_explicit(&r->otail, memory_order_acquire);
    Py_ssize_t k = ring_take(r, h, out, 0, max, &self->last_need);
    if (k > 0 || PyErr_Occurred())
        return k;
    /* relaxed: under clock, ohead was last written by a clock holder */
    *ohead = *oh = atomic_load_explicit(&r->ohead, memory_order_relaxed);
    if (*oh == ot)
        return 0;
    return ovf_take(self, r, oh, ot, out, max);
}

static Py_ssize_t ring_get_raw_(RingObject *self, raw_t *out, Py_ssize_t max, int64_t deadline)
{
    il_ring_t *r = RING(self);
    if (ovf_check(self) < 0)
        return -1;
    for (;;) {
        int lr = ring_lock_side(self, &r->clock, deadline);
        if (lr < 0)
            return -1;
        if (lr == 1) {
            PyErr_SetString(il_Empty, "timed out waiting for the queue's consumer lock");
            return -1;
        }
        IL_CRASH(RING_GET_LOCKED);
        /* acquire: see the shutdown only together with every put before it
         * (it is set under plock after them); read before tail. */
        uint32_t flags = atomic_load_explicit(&r->flags, memory_order_acquire);
        if (flags & IL_RING_IMMEDIATE) {
            /* shutdown(immediate=True): what is left is discarded; consume
             * nothing (il_ring_unfinished counts it done). */
            il_mutex_unlock(&r->clock);
            PyErr_SetString(il_QueueClosed, "get() on a queue shut down with immediate=True");
            return -1;
        }
        /* relaxed: under clock, head was last written by a clock holder. */
        uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
        uint64_t h = head;
        Py_ssize_t k = ring_take(r, &h, out, 0, max, &self->last_need);
        /* Only when the ring is empty: the overflow's records are younger
         * (rule C, out of line). */
        uint64_t ohead = 0, oh = 0;
        if (__builtin_expect(k == 0 && self->ovf, 0) && !PyErr_Occurred())
            k = ovf_get(self, r, &h, out, max, &ohead, &oh);
        if (k > 0 || oh != ohead) {
            IL_CRASH(RING_GET_COPIED);
            /* The commit point.  release: we finished reading these bytes
             * before a producer can see them free and overwrite them (the
             * ring's), or find the overflow drained and go back to the ring
             * (the overflow's). */
            atomic_store_explicit(&r->head, h, memory_order_release); /* (maybe unchanged) */
            if (oh != ohead)
                atomic_store_explicit(&r->ohead, oh, memory_order_release);
            IL_CRASH(RING_GET_PUBLISHED);
        }
        il_mutex_unlock(&r->clock);
        if (oh != ohead)
            ovf_drop_passed(self, r, ohead, oh);
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
        if (flags & IL_RING_SHUTDOWN) {
            PyErr_SetString(il_QueueClosed, "get() on a shut-down queue: it is shut down and drained");
            return -1;
        }
        if (deadline == 0) {
            PyErr_SetNone(il_Empty);
            return -1;
        }
        int w = ring_wait((ShmObject *)self, &r->not_empty, cond_not_empty, 0, deadline, NULL);
        if (w < 0)
            return -1;
        if (w == IL_TIMEDOUT) {
            PyErr_SetNone(il_Empty);
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
        if (il_parse_args("get", args, nargs, kwnames, get_names, 2, 0, a) < 0 ||
            il_parse_timeout(IL_TO_QUEUE, a[0], a[1], &deadline) < 0)
            return NULL;
    }
    if (shm_check((ShmObject *)self) < 0 || check_open(self) < 0)
        return NULL;
    raw_t x;
    if (ring_get_raw(self, &x, 1, deadline) < 0)
        return NULL;
    return il_raw_finish(&x, &self->spill);
}

static PyObject *Ring_get_nowait(RingObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0 || check_open(self) < 0)
        return NULL;
    raw_t x;
    if (ring_get_raw(self, &x, 1, 0) < 0)
        return NULL;
    return il_raw_finish(&x, &self->spill);
}

static const char *const get_many_names[] = {"max_items", "block", "timeout"};

static PyObject *Ring_get_many(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    PyObject *a[3];
    int64_t deadline;
    if (il_parse_args("get_many", args, nargs, kwnames, get_many_names, 3, 0, a) < 0 ||
        il_parse_timeout(IL_TO_QUEUE, a[1], a[2], &deadline) < 0 || shm_check((ShmObject *)self) < 0 ||
        check_open(self) < 0)
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
        PyObject *o = list ? il_raw_finish(&xs[i], &self->spill) : NULL;
        if (!list) {
            il_raw_discard(&xs[i], &self->spill);
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

/* The items and bytes in the queue at this instant: none once it is shut
 * down with immediate=True (what the ring still holds is discarded). */
static inline void ring_depth(il_ring_t *r, uint32_t *count, uint32_t *used)
{
    /* acquire, head first: the tail we read after it is never behind it.
     * flags last: an IMMEDIATE that lands after our reads only makes the
     * snapshot one instant older. */
    uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    /* the overflow's items count too (overflow.md); 0 and 0 if never used */
    uint64_t oh = atomic_load_explicit(&r->ohead, memory_order_acquire);
    uint64_t ot = atomic_load_explicit(&r->otail, memory_order_acquire);
    if (atomic_load_explicit(&r->flags, memory_order_acquire) & IL_RING_IMMEDIATE) {
        h = t;
        oh = ot;
    }
    *count = IL_CNT(t) - IL_CNT(h) + (IL_CNT(ot) - IL_CNT(oh));
    *used = IL_POS(t) - IL_POS(h);
}

static PyObject *Ring_qsize(RingObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    uint32_t count, used;
    ring_depth(RING(self), &count, &used);
    return PyLong_FromUnsignedLong(count);
}

static PyObject *Ring_empty(RingObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    uint32_t count, used;
    ring_depth(RING(self), &count, &used);
    return PyBool_FromLong(count == 0);
}

static PyObject *Ring_full(RingObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    il_ring_t *r = RING(self);
    if (r->features & IL_RING_OVERFLOW) /* full only when the overflow's span is */
        return PyBool_FromLong(!il_ring_writable(r, 8));
    uint32_t count, used;
    ring_depth(r, &count, &used);
    /* Full: no room for another item, counting the smallest record (8 B:
     * a header and an empty payload). */
    return PyBool_FromLong(count >= r->maxsize || used + 8 > r->capacity);
}

static const char *const shutdown_names[] = {"immediate"};

/* shutdown(immediate=False): the queue-wide end of stream, queue.Queue's
 * (3.13).  One fetch_or under plock is the whole change of state (ring.h's
 * table of the flags bits); the wake-ups after it only hasten what every
 * sleeper sees at the end of its slice anyway. */
static PyObject *Ring_shutdown(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    PyObject *a[1];
    if (il_parse_args("shutdown", args, nargs, kwnames, shutdown_names, 1, 0, a) < 0 ||
        shm_check((ShmObject *)self) < 0)
        return NULL;
    int immediate = a[0] ? PyObject_IsTrue(a[0]) : 0;
    if (immediate < 0)
        return NULL;
    il_ring_t *r = RING(self);
    /* Under plock: every put that committed before the shutdown is
     * published before the flag, and none commits after it (a producer
     * checks the flag under plock); consumers read the flag before tail
     * (ring_get_raw).  plock is held for no more than the fetch_or: a
     * process killed here leaves the flag set or not, never half (the
     * discard of immediate=True is the IMMEDIATE bit itself: nothing is
     * freed or counted under the lock, see il_ring_unfinished). */
    int lr = ring_lock_side(self, &r->plock, IL_FOREVER);
    if (lr != 0)
        return NULL;
    IL_CRASH(RING_SHUTDOWN_LOCKED);
    /* release: pairs with the consumers' acquire load of flags, which then
     * see every tail published before it. */
    atomic_fetch_or_explicit(&r->flags, IL_RING_SHUTDOWN | (immediate ? IL_RING_IMMEDIATE : 0u),
                             memory_order_release);
    IL_CRASH(RING_SHUTDOWN_SET);
    il_mutex_unlock(&r->plock);
    /* Wake every sleeper on both sides unconditionally: they must see the
     * flag.  release: the seq bump is ordered after the flag, so a sleeper
     * that sees the new seq sees the flag.  By 2: a new epoch, bit 0 (armed,
     * eventcount.h) left as it was. */
    atomic_fetch_add_explicit(&r->not_empty.seq, 2, memory_order_release);
    il_futex_wake(&r->not_empty.seq, INT32_MAX);
    atomic_fetch_add_explicit(&r->not_full.seq, 2, memory_order_release);
    il_futex_wake(&r->not_full.seq, INT32_MAX);
    if (immediate) /* the discarded items count as done: join() may return */
        il_ec_notify(&r->all_done, INT32_MAX);
    Py_RETURN_NONE;
}

static PyObject *Ring_get_is_shutdown(RingObject *self, void *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    /* acquire: a caller that sees the flag sees the final tail too */
    return PyBool_FromLong(atomic_load_explicit(&RING(self)->flags, memory_order_acquire) &
                           IL_RING_SHUTDOWN);
}

/* _close_here(os_error=False): close() for this object only (see
 * closed_here).  No shared state is touched, so nothing to lose if the
 * process dies here. */
static PyObject *Ring_close_here(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int os_error = nargs > 0 ? PyObject_IsTrue(args[0]) : 0;
    if (os_error < 0)
        return NULL;
    if (!self->closed_here)
        self->closed_here = os_error ? CLOSED_OS : CLOSED_VALUE;
    Py_RETURN_NONE;
}

static PyObject *Ring_get_closed_here(RingObject *self, void *unused)
{
    return PyBool_FromLong(self->closed_here != 0);
}

/* For tests: the bytes ring_wait's consumer spin expects the next item to
 * take (ring_take). */
static PyObject *Ring_get_last_need(RingObject *self, void *unused)
{
    return PyLong_FromUnsignedLongLong(self->last_need);
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
        /* Tasks are the items put; after shutdown(immediate=True) only the
         * items taken (the rest were discarded as done): il_ring_unfinished.
         * The overflow's count with the ring's.  acquire: as there. */
        uint32_t put = IL_CNT(atomic_load_explicit(&r->tail, memory_order_acquire)) +
                       IL_CNT(atomic_load_explicit(&r->otail, memory_order_acquire));
        if (atomic_load_explicit(&r->flags, memory_order_acquire) & IL_RING_IMMEDIATE)
            put = IL_CNT(atomic_load_explicit(&r->head, memory_order_acquire)) +
                  IL_CNT(atomic_load_explicit(&r->ohead, memory_order_acquire));
        if ((int32_t)(put - d) <= 0) {
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
    if (il_parse_args("join", args, nargs, kwnames, join_names, 1, 0, a) < 0 ||
        il_parse_timeout(IL_TO_QUEUE, NULL, a[0], &deadline) < 0 || shm_check((ShmObject *)self) < 0)
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
    int32_t n = il_ring_unfinished(RING(self));
    return PyLong_FromLong(n > 0 ? n : 0);
}

static const char *const wait_names[] = {"nbytes", "timeout"};

/* _wait_readable(timeout=None) / _wait_writable(nbytes, timeout=None): block
 * (GIL released) until a get / a put of nbytes may succeed, or the queue is
 * shut down; False on timeout.  Consume nothing: the asyncio layer waits with
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
    if (il_parse_timeout(IL_TO_QUEUE, NULL, timeout, &deadline) < 0)
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
            il_ec_notify_armed(ec, 1);
            break;
        }
    }
    Py_RETURN_TRUE;
}

static PyObject *Ring_wait_readable(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames)
{
    PyObject *a[1];
    if (il_parse_args("_wait_readable", args, nargs, kwnames, wait_names + 1, 1, 0, a) < 0 ||
        shm_check((ShmObject *)self) < 0)
        return NULL;
    return ring_wait_method(self, &RING(self)->not_empty, cond_not_empty, 0, a[0]);
}

static PyObject *Ring_wait_writable(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames)
{
    PyObject *a[2];
    if (il_parse_args("_wait_writable", args, nargs, kwnames, wait_names, 2, 1, a) < 0 ||
        shm_check((ShmObject *)self) < 0)
        return NULL;
    unsigned long long n = PyLong_AsUnsignedLongLong(a[0]);
    if (n == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    uint64_t need = IL_ALIGN8(sizeof(il_rec_t) + n);
    if (self->spill.threshold && need > self->spill.threshold) /* it will go as a reference */
        need = IL_ALIGN8(sizeof(il_rec_t) + sizeof(il_spill_ref_t));
    return ring_wait_method(self, &RING(self)->not_full, cond_room, need, a[1]);
}

/* Ring._loan(nbytes): a writable buffer in a pooled spill file of this
 * queue (bind_loan.c; Queue.loan checks the argument).  Counted as a call
 * in flight: the pages are mapped with the GIL released. */
static PyObject *Ring_loan(RingObject *self, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "nbytes must be >= 0");
        return NULL;
    }
    if (shm_check((ShmObject *)self) < 0 || check_open(self) < 0)
        return NULL;
    if (!self->spill.prefix[0] || !self->spill.threshold) {
        PyErr_Format(PyExc_ValueError,
                     "Queue %R was made with capacity=: it never uses spill files, so it "
                     "cannot lend one (loan() needs a queue made without capacity=)",
                     (PyObject *)self);
        return NULL;
    }
    ((ShmObject *)self)->busy++;
    PyObject *res = il_loan_new(&self->spill, n);
    ((ShmObject *)self)->busy--;
    return res;
}

static PyObject *Ring_set_spill(RingObject *self, PyObject *args)
{
    const char *prefix;
    Py_ssize_t plen;
    unsigned long long threshold;
    if (!PyArg_ParseTuple(args, "s#K:_set_spill", &prefix, &plen, &threshold))
        return NULL;
    if ((size_t)plen >= sizeof self->spill.prefix || !strchr(prefix, '/')) {
        PyErr_SetString(PyExc_ValueError, "spill prefix too long or not a path");
        return NULL;
    }
    memcpy(self->spill.prefix, prefix, (size_t)plen + 1);
    self->spill.threshold = threshold;
    Py_RETURN_NONE;
}

static PyObject *Ring_stats(RingObject *self, PyObject *unused)
{
    if (shm_check((ShmObject *)self) < 0)
        return NULL;
    il_ring_t *r = RING(self);
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    uint64_t oh = atomic_load_explicit(&r->ohead, memory_order_acquire);
    uint64_t ot = atomic_load_explicit(&r->otail, memory_order_acquire);
    uint32_t depth, used;
    ring_depth(r, &depth, &used);
    /* relaxed: a snapshot for display */
    uint32_t flags = atomic_load_explicit(&r->flags, memory_order_relaxed);
    PyObject *pl = il_mutex_stats_dict(&r->plock), *cl = il_mutex_stats_dict(&r->clock);
    PyObject *d = Py_BuildValue(
        "{s:K,s:K,s:K,s:I,s:I,s:I,s:O,s:O,s:O,s:N,s:N,s:I,s:I,s:I,s:I,s:I,s:I,s:O,s:O}", "size",
        (unsigned long long)r->size, "capacity", (unsigned long long)r->capacity, "maxsize",
        (unsigned long long)r->maxsize, "depth", (unsigned)depth, "bytes_used", (unsigned)used,
        "put_count_mod32", (unsigned)(IL_CNT(t) + IL_CNT(ot)), "closed",
        (flags & IL_RING_SHUTDOWN) ? Py_True : Py_False, "immediate",
        (flags & IL_RING_IMMEDIATE) ? Py_True : Py_False, "unused", Py_None, "producer_lock", pl, "consumer_lock", cl, "consumers_sleeping",
        atomic_load_explicit(&r->not_empty.waiters, memory_order_relaxed), "producers_sleeping",
        atomic_load_explicit(&r->not_full.waiters, memory_order_relaxed),
        /* relaxed: a statistic */
        "spilled", atomic_load_explicit(&r->spilled, memory_order_relaxed),
        "overflow_depth", (unsigned)(IL_CNT(ot) - IL_CNT(oh)),
        "overflow_bytes", (unsigned)(IL_POS(ot) - IL_POS(oh)),
        "overflow_items", atomic_load_explicit(&r->ovf_items, memory_order_relaxed),
        /* bit 0 of seq: a sleeper may be asleep (eventcount.h, the armed
         * variant); relaxed: a snapshot */
        "consumers_armed",
        (atomic_load_explicit(&r->not_empty.seq, memory_order_relaxed) & 1u) ? Py_True : Py_False,
        "producers_armed",
        (atomic_load_explicit(&r->not_full.seq, memory_order_relaxed) & 1u) ? Py_True : Py_False);
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
    if (r->features & ~IL_RING_OVERFLOW) {
        snprintf(why, n, "unknown features 0x%x", r->features);
        return 1;
    }
    {
        /* the overflow's positions: 8-aligned, within its span (as I1) */
        uint64_t oh = atomic_load_explicit(&r->ohead, memory_order_acquire);
        uint64_t ot = atomic_load_explicit(&r->otail, memory_order_acquire);
        if ((IL_POS(oh) & 7u) || (IL_POS(ot) & 7u) ||
            (uint64_t)(uint32_t)(IL_POS(ot) - IL_POS(oh)) > il_ovf_span_max(r)) {
            snprintf(why, n, "overflow positions out of range: head %u, tail %u", IL_POS(oh),
                     IL_POS(ot));
            return 1;
        }
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
    static char *kw[] = {"buffer", "offset", "create", "size", "capacity", "maxsize",
                         "overflow", NULL};
    PyObject *buffer;
    Py_ssize_t offset;
    int create = 0, overflow = 0;
    unsigned long long size = 0, capacity = 0, maxsize = 0;
    (void)ring_init_names;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On|pKKKp:Ring", kw, &buffer, &offset, &create,
                                     &size, &capacity, &maxsize, &overflow))
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
        il_ring_init(RING(self), size, capacity, maxsize, overflow ? IL_RING_OVERFLOW : 0);
        self->ovf = overflow != 0;
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
    self->ovf = (RING(self)->features & IL_RING_OVERFLOW) != 0;
    return 0;
}

static PyMethodDef Ring_methods[] = {
    /* The docstrings are the API reference (docs/api/queues.rst): "$self" in the
     * text signature so that inspect.signature() keeps the first parameter. */
    {"put", (PyCFunction)(void (*)(void))Ring_put, METH_FASTCALL | METH_KEYWORDS,
     "put($self, obj, block=True, timeout=None)\n--\n\n"
     "Put obj at the tail of the queue.\n\n"
     "bytes and bytearray go in as they are; anything else is pickled (protocol 5, "
     "out-of-band buffers such as numpy arrays copied straight into the ring). In a queue "
     "made without capacity=, an item above 1 MiB goes through a file of its own, and only "
     "a reference through the ring. With "
     "block=True, wait for room (at most timeout seconds; None: no limit); with "
     "block=False, do not wait.\n\n"
     "Raises:\n"
     "    queue.Full: no room in time (at once with block=False).\n"
     "    ShutDown: the queue was shut down (shutdown(), by any process).\n"
     "    ValueError: the item can never fit (larger than the capacity given at creation), "
     "a negative timeout, or close() was called on this object.\n"
     "    OSError: no room in /dev/shm for a large item's file or the overflow (nothing was "
     "put).\n"
     "    TypeError: timeout is not a number; an unpicklable item's pickling error "
     "propagates as it is.\n\n"
     "If a process dies: a producer killed inside put() leaves its item wholly in the "
     "queue or not at all (published by one atomic store once written); the next "
     "producer takes the producer lock over within about 50 ms."},
    {"put_nowait", (PyCFunction)Ring_put_nowait, METH_O,
     "put_nowait($self, obj, /)\n--\n\n"
     "put(obj, block=False): raises queue.Full at once if there is no room, "
     "ShutDown if the queue was shut down."},
    {"put_many", (PyCFunction)(void (*)(void))Ring_put_many, METH_FASTCALL | METH_KEYWORDS,
     "put_many($self, items, block=True, timeout=None)\n--\n\n"
     "Put every item of an iterable, in order, under as few lock round trips as room "
     "allows; the items are handed on to consumers every 256 KiB (every item "
     "pickled first: an unpicklable one puts nothing; an item for a spill file is "
     "written right before it is handed on).\n\n"
     "With block=False: all or nothing (queue.Full if they do not all fit now).\n\n"
     "Raises:\n"
     "    queue.Full: timed out (the items put before the timeout stay in the queue, "
     "their number in the error's put_count), or not all fit with block=False.\n"
     "    OSError: no room for an item's spill file (put_count: the items before it, "
     "in the queue).\n"
     "    ShutDown: the queue was shut down.\n"
     "    ValueError: an item can never fit, or close() was called on this object.\n\n"
     "If a process dies: each item is published on its own; a producer killed midway "
     "leaves a prefix of the items in the queue, each whole."},
    {"get", (PyCFunction)(void (*)(void))Ring_get, METH_FASTCALL | METH_KEYWORDS,
     "get($self, block=True, timeout=None)\n--\n\n"
     "Remove and return the oldest item.\n\n"
     "Raises:\n"
     "    queue.Empty: no item in time (at once with block=False).\n"
     "    ShutDown: the queue was shut down and every item put before has been taken "
     "(at once after shutdown(immediate=True)).\n"
     "    ValueError: a negative timeout, or close() was called on this object.\n"
     "    TypeError: timeout is not a number. An unpickling error propagates as it is "
     "(the item is consumed).\n\n"
     "If a process dies: a consumer killed inside get() either took the item or left "
     "it in the queue (never half); the next consumer takes the consumer lock over "
     "within about 50 ms. A sleeper whose producer died wakes within 100 ms."},
    {"get_nowait", (PyCFunction)Ring_get_nowait, METH_NOARGS,
     "get_nowait($self, /)\n--\n\n"
     "get(block=False): raises queue.Empty at once if the queue is empty, "
     "ShutDown if it is shut down and drained."},
    {"get_many", (PyCFunction)(void (*)(void))Ring_get_many, METH_FASTCALL | METH_KEYWORDS,
     "get_many($self, max_items=1024, block=True, timeout=None)\n--\n\n"
     "Wait for at least one item, then return a list of up to max_items, oldest "
     "first, taken under one lock round trip. The list ends early once its items "
     "come to 256 KiB (always at least one item; an item in a spill file counts its "
     "size), so that a batch of large items costs no more per item than get().\n\n"
     "Raises:\n"
     "    queue.Empty: no item in time.\n"
     "    ShutDown: shut down and drained.\n"
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
    {"_shutdown", (PyCFunction)(void (*)(void))Ring_shutdown, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"_close_here", (PyCFunction)(void (*)(void))Ring_close_here, METH_FASTCALL, NULL},
    {"_task_done", (PyCFunction)Ring_task_done, METH_NOARGS, NULL},
    {"_join", (PyCFunction)(void (*)(void))Ring_join, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_stats", (PyCFunction)Ring_stats, METH_NOARGS, NULL},
    {"_set_spill", (PyCFunction)Ring_set_spill, METH_VARARGS, NULL},
    {"_loan", (PyCFunction)Ring_loan, METH_O, NULL},
    {"_detach", (PyCFunction)shm_detach, METH_NOARGS, NULL},
    {"_wait_readable", (PyCFunction)(void (*)(void))Ring_wait_readable,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_wait_writable", (PyCFunction)(void (*)(void))Ring_wait_writable,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {NULL}};

static PyGetSetDef Ring_getset[] = {
    {"_is_shutdown", (getter)Ring_get_is_shutdown, NULL, NULL, NULL},
    {"_closed_here", (getter)Ring_get_closed_here, NULL, NULL, NULL},
    {"_unfinished_tasks", (getter)Ring_unfinished_tasks, NULL, NULL, NULL},
    {"_last_need", (getter)Ring_get_last_need, NULL, NULL, NULL},
    {NULL}};

IL_SHM_TYPE(il_RingType, "Ring", sizeof(RingObject), Ring_init, Ring_methods, NULL, Ring_getset,
            "Ring(buffer, offset, create=False, size=0, capacity=0, maxsize=0)\n\n"
            "The shared FIFO over a writable buffer (see ring.h). Used through "
            "interlock.Queue.");


int il_ring_binding_init(void)
{
    str_note_role = PyUnicode_InternFromString("_note_role");
    return str_note_role ? 0 : -1;
}
