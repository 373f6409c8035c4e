/*
 * bind_spillpool.c -- warm spill files (the protocol: spillpool.h; the
 * design: docs/design/spill.md, "The pool").
 *
 * Per process, per queue (its spill prefix), up to IL_POOL_SLOTS files this
 * process made, each kept mapped.  All of this state is process-local and
 * touched with the GIL held; only the trailer word is shared.
 */
#define _GNU_SOURCE
#include "bind_codec.h"
#include "spillpool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "platform.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

#define IL_POOL_QUEUES 16           /* queues with a pool, per process */
#define IL_POOL_SLOTS 32            /* files per queue */
#define IL_POOL_MAX_FILE (1ull << 30) /* larger items are never pooled */
#define IL_POOL_MAX_BYTES (2ull << 30) /* per queue, and at most 1/4 of the directory's size */
#define IL_POOL_IDLE_NS (10ull * 1000000000ull) /* a FREE file unused this long goes */

_Atomic uint32_t il_pool_fork_gen;

typedef struct {
    char *addr;        /* NULL: empty slot */
    uint64_t size;     /* the file's length (trailer included) */
    uint32_t pid;      /* the name: prefix + pid + token */
    uint64_t token;
    uint64_t last_ns;  /* when an item last went in */
    int creating;      /* being made, the GIL released: not to be touched */
    int reused;        /* written through the mapping at least once */
    int writing;       /* an item is being copied in, the GIL released */
    int dropped;       /* forgotten while writing: unmapped when the copy ends */
    uint32_t gen;      /* bumped at each file made in this slot (a loan's check) */
    il_loan_t *loan;   /* a live loan of this file (Queue.loan): never reused meanwhile */
} pool_slot_t;

typedef struct il_pool {
    pid_t pid; /* 0: unused */
    uint64_t max_bytes; /* IL_POOL_MAX_BYTES, or a quarter of a smaller /dev/shm */
    char prefix[IL_SPILL_PREFIX_MAX];
    pool_slot_t slot[IL_POOL_SLOTS];
} il_pool_t;

static il_pool_t pools[IL_POOL_QUEUES];

static il_pool_trailer_t *trailer(char *addr, uint64_t size)
{
    return (il_pool_trailer_t *)(addr + size - sizeof(il_pool_trailer_t));
}

static void slot_path(char *out, size_t n, const il_pool_t *p, const pool_slot_t *s)
{
    snprintf(out, n, "%s%u.%016llx", p->prefix, s->pid, (unsigned long long)s->token);
}

/* Unmap a slot's file, or, while a loan of it lives, leave the mapping to
 * the loan (its memory is the user's buffer): il_pool_loan_end unmaps it. */
static void unmap_slot(pool_slot_t *s)
{
    if (s->loan) {
        s->loan->owns_map = 1;
        s->loan = NULL;
    } else {
        munmap(s->addr, (size_t)s->size);
    }
    s->addr = NULL;
}

/* Forget a slot: ORPHAN, and remove the name if nobody holds the file. */
static void slot_forget(il_pool_t *p, pool_slot_t *s)
{
    il_pool_trailer_t *t = trailer(s->addr, s->size);
    /* acq_rel: seeing FREE, the receiver's last use happened before the
     * unlink; setting ORPHAN, whoever releases it later sees it. */
    uint32_t old = atomic_fetch_or_explicit(&t->state, IL_POOL_ORPHAN, memory_order_acq_rel);
    if (old == IL_POOL_FREE) {
        char path[IL_SPILL_PATH_MAX];
        slot_path(path, sizeof path, p, s);
        unlink(path);
    }
    unmap_slot(s);
}

/* A forked child inherited its parent's pools: drop them without touching
 * the files (the parent still uses them). */
static void pool_check_pid(il_pool_t *p)
{
    if (p->pid && p->pid != getpid()) {
        for (int i = 0; i < IL_POOL_SLOTS; i++) {
            if (p->slot[i].addr)
                unmap_slot(&p->slot[i]); /* (a loan's mapping: the child's loan's now) */
        }
        p->pid = 0;
    }
}

static il_pool_t *pool_find(const char *prefix, int create)
{
    il_pool_t *empty = NULL;
    for (int i = 0; i < IL_POOL_QUEUES; i++) {
        il_pool_t *p = &pools[i];
        pool_check_pid(p);
        if (p->pid && strcmp(p->prefix, prefix) == 0)
            return p;
        if (!p->pid && !empty) {
            int busy = 0;
            for (int k = 0; k < IL_POOL_SLOTS; k++)
                busy |= p->slot[k].addr != NULL;
            if (!busy)
                empty = p;
        }
    }
    if (!create || !empty)
        return NULL;
    empty->pid = getpid();
    snprintf(empty->prefix, sizeof empty->prefix, "%s", prefix);
    /* A pool takes at most a quarter of the spill directory (Docker's
     * /dev/shm is 64 MiB by default): what it keeps is room that a fresh
     * file may need. */
    empty->max_bytes = IL_POOL_MAX_BYTES;
    char dir[IL_SPILL_PREFIX_MAX];
    snprintf(dir, sizeof dir, "%s", prefix);
    char *slash = strrchr(dir, '/');
    struct statvfs sv;
    if (slash) {
        *slash = 0;
        if (statvfs(dir, &sv) == 0 && sv.f_blocks) {
            uint64_t quarter = (uint64_t)sv.f_blocks * (uint64_t)sv.f_frsize / 4;
            if (quarter < empty->max_bytes)
                empty->max_bytes = quarter;
        }
    }
    return empty;
}

static int holder_dead(il_pool_trailer_t *t)
{
    /* relaxed: a hint; a dead holder wrote it before it died, and its
     * mapping went with it */
    uint32_t h = atomic_load_explicit(&t->holder, memory_order_relaxed);
    return h && h != il_self_pid_fast() && kill((pid_t)h, 0) < 0 && errno == ESRCH;
}

/* A new pooled file of `size` bytes, mapped; its trailer says BUSY.  0, or
 * an errno (nothing left behind). */
static int slot_create(il_pool_t *p, pool_slot_t *s, uint64_t size, int *fd_out)
{
    char dir[IL_SPILL_PREFIX_MAX];
    const char *slash = strrchr(p->prefix, '/');
    size_t dl = slash ? (size_t)(slash - p->prefix) : 0;
    if (!dl || dl >= sizeof dir)
        return EINVAL;
    memcpy(dir, p->prefix, dl);
    dir[dl] = 0;
    uint64_t token;
    if (getrandom(&token, sizeof token, GRND_NONBLOCK) != (ssize_t)sizeof token)
        token = (uint64_t)il_now_ns() ^ ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)s;
    int err = 0;
    char *addr = MAP_FAILED;
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno;
    if (ftruncate(fd, (off_t)size) < 0)
        err = errno;
    else
        err = posix_fallocate(fd, 0, (off_t)size); /* ENOSPC now, not SIGBUS later */
    if (!err) {
        /* not populated: the first item is written with pwrite; the pages
         * are mapped here by the first reuse's copy */
        addr = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (addr == MAP_FAILED)
            err = errno;
    }
    if (err) {
        close(fd);
        return err;
    }
    il_pool_trailer_t *t = trailer(addr, size);
    /* (a fallocated page: the write cannot fault with SIGBUS) */
    t->magic = IL_POOL_MAGIC;
    /* relaxed: the file has no name yet; the ring publishes it */
    atomic_store_explicit(&t->state, IL_POOL_BUSY, memory_order_relaxed);
    atomic_store_explicit(&t->holder, 0, memory_order_relaxed);
    s->addr = addr;
    s->size = size;
    s->pid = (uint32_t)getpid();
    s->token = token;
    s->gen++;
    s->loan = NULL;
    *fd_out = fd;
    return 0;
}

/* One look over the pool for a file of `size` bytes (il_pool_claim): the
 * smallest FREE one that fits (*fit), the first empty slot (*empty), the
 * least recently used FREE one that does not fit (*evict), and the bytes
 * the pool's files hold (*total).  With `reap`, a file whose receiver was
 * killed holding it counts as FREE (a kill(pid, 0) per held file).
 * Returns whether any file is held by a receiver. */
static int pool_scan(il_pool_t *p, uint64_t size, uint64_t now, int reap, int *fit,
                     int *empty, int *evict, uint64_t *total)
{
    int held = 0;
    *total = 0;
    *fit = *empty = *evict = -1;
    for (int i = 0; i < IL_POOL_SLOTS; i++) {
        pool_slot_t *s = &p->slot[i];
        if (s->creating)
            continue;
        if (!s->addr) {
            if (*empty < 0)
                *empty = i;
            continue;
        }
        il_pool_trailer_t *t = trailer(s->addr, s->size);
        /* acquire: seeing FREE, the receiver's accesses to the item are
         * done before this process writes the next one */
        uint32_t st = atomic_load_explicit(&t->state, memory_order_acquire);
        if (st == IL_POOL_DROPPED || (st == IL_POOL_FREE && now - s->last_ns > IL_POOL_IDLE_NS)) {
            slot_forget(p, s); /* shared with a fork child, or unused for long */
            if (*empty < 0)
                *empty = i;
            continue;
        }
        if (s->loan) { /* its buffer is still the user's: never written */
            *total += s->size;
            continue;
        }
        if (st == IL_POOL_BUSY) {
            /* relaxed: as in holder_dead */
            held |= atomic_load_explicit(&t->holder, memory_order_relaxed) != 0;
            if (reap && holder_dead(t)) {
                /* its receiver was killed holding it: nobody maps it now */
                st = IL_POOL_FREE;
                atomic_store_explicit(&t->state, IL_POOL_FREE, memory_order_relaxed);
            }
        }
        *total += s->size;
        if (st != IL_POOL_FREE)
            continue;
        /* the smallest FREE file that holds it, wasting at most 1/8 */
        if (s->size >= size && s->size - size <= s->size / 8 &&
            (*fit < 0 || s->size < p->slot[*fit].size))
            *fit = i;
        else if (*evict < 0 || s->last_ns < p->slot[*evict].last_ns)
            *evict = i;
    }
    return held;
}

int il_pool_claim(const il_spill_cfg_t *cfg, uint64_t content, il_pool_claim_t *c)
{
    uint64_t size = ((content + 63u) & ~(uint64_t)63u) + sizeof(il_pool_trailer_t);
    if (size > IL_POOL_MAX_FILE)
        return 0;
    il_pool_t *p = pool_find(cfg->prefix, 1);
    if (!p)
        return 0;
    uint64_t now = il_now_ns();
    uint64_t total;
    int fit, empty, evict;
    /* The first look takes a FREE file without asking the kernel about
     * anyone; only if none fits does a second one also take a file whose
     * receiver was killed holding it (kept off the common path). */
    if (pool_scan(p, size, now, 0, &fit, &empty, &evict, &total) && fit < 0)
        pool_scan(p, size, now, 1, &fit, &empty, &evict, &total);
    c->pool = p;
    if (fit >= 0) {
        pool_slot_t *s = &p->slot[fit];
        il_pool_trailer_t *t = trailer(s->addr, s->size);
        /* relaxed: this process alone moves a FREE file; the ring's
         * release of tail publishes the item with the state */
        atomic_store_explicit(&t->holder, 0, memory_order_relaxed);
        atomic_store_explicit(&t->state, IL_POOL_BUSY, memory_order_relaxed);
        s->last_ns = now;
        c->first_reuse = !s->reused;
        s->reused = 1;
        s->writing = 1;
        c->slot = fit;
        c->fd = -1;
        c->addr = s->addr;
        c->size = s->size;
        c->pid = s->pid;
        c->token = s->token;
        c->gen = s->gen;
        return 1;
    }
    if (empty < 0 && evict >= 0) {
        total -= p->slot[evict].size;
        slot_forget(p, &p->slot[evict]);
        empty = evict;
    }
    if (empty < 0 || total + size > p->max_bytes)
        return 0; /* every file is in use: a fresh file, not pooled */
    pool_slot_t *s = &p->slot[empty];
    int fd = -1, err;
    for (int attempt = 0;; attempt++) {
        s->creating = 1;
        Py_BEGIN_ALLOW_THREADS
        err = slot_create(p, s, size, &fd);
        Py_END_ALLOW_THREADS
        s->creating = 0;
        /* no room: the pool's idle files may hold it; they go, once more */
        if (err != ENOSPC || attempt > 0 || il_pool_shrink(cfg) == 0)
            break;
    }
    if (err) {
        errno = err;
        return -1;
    }
    s->last_ns = now;
    s->reused = 0;
    s->writing = 1;
    c->first_reuse = 0;
    c->slot = empty;
    c->fd = fd;
    c->addr = s->addr;
    c->size = s->size;
    c->pid = s->pid;
    c->token = s->token;
    c->gen = s->gen;
    return 1;
}

int il_pool_shrink(const il_spill_cfg_t *cfg)
{
    /* This process's idle warm mappings hold files' memory too (the
     * receiver's side, bind_warmmap.c): let them go first. */
    int n = il_warm_drop(NULL);
    il_pool_t *p = pool_find(cfg->prefix, 0);
    if (!p)
        return n;
    for (int i = 0; i < IL_POOL_SLOTS; i++) {
        pool_slot_t *s = &p->slot[i];
        if (!s->addr || s->creating || s->writing || s->dropped || s->loan)
            continue;
        /* acquire: as in il_pool_claim */
        uint32_t st = atomic_load_explicit(&trailer(s->addr, s->size)->state, memory_order_acquire);
        if (st == IL_POOL_FREE || st == IL_POOL_DROPPED) {
            slot_forget(p, s);
            n++;
        }
    }
    return n;
}

void il_pool_copied(il_pool_claim_t *c)
{
    pool_slot_t *s = &c->pool->slot[c->slot];
    if (s->addr != c->addr)
        return;
    s->writing = 0;
    if (s->dropped) {
        munmap(s->addr, (size_t)s->size);
        s->addr = NULL;
        s->dropped = 0;
    }
}

void il_pool_abort(il_pool_claim_t *c)
{
    il_pool_t *p = c->pool;
    pool_slot_t *s = &p->slot[c->slot];
    if (p->pid != getpid() || !s->addr || s->addr != c->addr)
        return;
    if (c->fd >= 0) {
        /* never named: the unnamed file goes with the mapping */
        munmap(s->addr, (size_t)s->size);
        s->addr = NULL;
    } else {
        /* release: nothing of this attempt is read by anyone; FREE again */
        atomic_store_explicit(&trailer(s->addr, s->size)->state, IL_POOL_FREE,
                              memory_order_release);
    }
}

/* A loan's slot, if the loan is still its slot's (this process's pool, the
 * same file: the slot's generation). */
static pool_slot_t *loan_slot(const il_loan_t *ln)
{
    il_pool_t *p = ln->claim.pool;
    if (!p || p->pid != getpid() || ln->pid != getpid())
        return NULL;
    pool_slot_t *s = &p->slot[ln->claim.slot];
    return s->loan == ln && s->addr == ln->claim.addr && s->gen == ln->claim.gen ? s : NULL;
}

int il_pool_loan_valid(const il_loan_t *ln) { return loan_slot(ln) != NULL; }

const char *il_pool_prefix(const il_loan_t *ln) { return ln->claim.pool->prefix; }

int il_pool_loan_claim(const il_spill_cfg_t *cfg, uint64_t content, il_loan_t *ln)
{
    int got = il_pool_claim(cfg, content, &ln->claim);
    if (got <= 0)
        return got;
    /* (the GIL was held since il_pool_claim returned: nothing dropped it) */
    il_pool_copied(&ln->claim);
    pool_slot_t *s = &ln->claim.pool->slot[ln->claim.slot];
    s->loan = ln;
    s->reused = 1; /* mapped below: a later reuse needs no populate */
    ln->pid = getpid();
    ln->owns_map = 0;
    slot_path(ln->path, sizeof ln->path, ln->claim.pool, s);
    /* The user writes through this mapping: unless an earlier item or loan
     * did, map every page now, in one call (a new file's pages exist:
     * fallocate; the mapping stays the loan's if another thread drops the
     * pool meanwhile: unmap_slot).  EINVAL before Linux 5.14: the user's
     * writes fault them in. */
    if (ln->claim.fd >= 0 || ln->claim.first_reuse) {
        char *addr = ln->claim.addr;
        size_t size = (size_t)ln->claim.size;
        Py_BEGIN_ALLOW_THREADS
        (void)madvise(addr, size, MADV_POPULATE_WRITE);
        Py_END_ALLOW_THREADS
    }
    return 1;
}

void il_pool_loan_end(il_loan_t *ln)
{
    int sent = atomic_load_explicit(&ln->state, memory_order_relaxed) == IL_LOAN_SENT;
    il_pool_claim_t *c = &ln->claim;
    if (!c->addr)
        return;
    if (ln->pid != getpid()) {
        /* a fork child's copy: its mapping is the child's; the file is
         * the parent's business */
        il_pool_t *p = c->pool;
        pool_slot_t *s = p ? &p->slot[c->slot] : NULL;
        if (s && s->loan == ln) {
            s->loan = NULL;
            s->addr = NULL; /* (the child's copy of the parent's pool) */
        }
        munmap(c->addr, (size_t)c->size);
        if (c->fd >= 0)
            close(c->fd);
    } else if (loan_slot(ln)) {
        pool_slot_t *s = &c->pool->slot[c->slot];
        s->loan = NULL;
        if (!sent) {
            if (c->fd >= 0) {
                /* never named: the unnamed file goes with its mapping */
                munmap(s->addr, (size_t)s->size);
                s->addr = NULL;
                close(c->fd);
            } else {
                /* release: the user's writes are not read by anyone;
                 * FREE for the next item */
                atomic_store_explicit(&trailer(s->addr, s->size)->state, IL_POOL_FREE,
                                      memory_order_release);
            }
        }
        /* sent: the file stays in the pool, FREE once its receiver lets go */
    } else if (ln->owns_map) {
        /* the pool forgot the file (detach, eviction): ORPHAN is set */
        if (!sent) {
            if (c->fd >= 0) {
                close(c->fd); /* unnamed: goes with the mapping */
            } else {
                /* FREE|ORPHAN: nobody will open it; the name goes */
                il_pool_release(trailer(c->addr, c->size), ln->path,
                                atomic_load_explicit(&il_pool_fork_gen, memory_order_relaxed));
            }
        }
        munmap(c->addr, (size_t)c->size);
    }
    c->addr = NULL;
}

int il_pool_release(il_pool_trailer_t *t, const char *path, uint32_t gen)
{
    uint32_t now_gen = atomic_load_explicit(&il_pool_fork_gen, memory_order_relaxed);
    if (now_gen != gen) {
        /* forked while holding it: a child may still read it */
        unlink(path);
        atomic_exchange_explicit(&t->state, IL_POOL_DROPPED, memory_order_acq_rel);
        return 0;
    }
    /* acq_rel: release, for the producer's next write; acquire, for ORPHAN */
    uint32_t old = atomic_exchange_explicit(&t->state, IL_POOL_FREE, memory_order_acq_rel);
    if (old & IL_POOL_ORPHAN) {
        unlink(path); /* the producer forgot it: nobody reuses it */
        return 0;
    }
    return 1;
}

static void pool_before_fork(void)
{
    /* relaxed: read back by this process and its child only */
    atomic_fetch_add_explicit(&il_pool_fork_gen, 1, memory_order_relaxed);
}

/* _core.spill_pool_drop(prefix): this process is done with the queue (its
 * last handle detaches): forget its pooled files. */
static PyObject *spill_pool_drop(PyObject *mod, PyObject *arg)
{
    (void)mod;
    const char *prefix = PyUnicode_AsUTF8(arg);
    if (!prefix)
        return NULL;
    (void)il_warm_drop(prefix); /* the receiver's side (bind_warmmap.c) */
    il_pool_t *p = pool_find(prefix, 0);
    int n = 0;
    if (p) {
        for (int i = 0; i < IL_POOL_SLOTS; i++) {
            pool_slot_t *s = &p->slot[i];
            if (!s->addr || s->creating || s->dropped)
                continue;
            n++;
            if (s->writing) {
                /* another thread is copying into it: ORPHAN now (it is
                 * BUSY: its receiver removes the name), unmapped by that
                 * thread when its copy ends (il_pool_copied) */
                atomic_fetch_or_explicit(&trailer(s->addr, s->size)->state, IL_POOL_ORPHAN,
                                         memory_order_acq_rel);
                s->dropped = 1;
            } else {
                slot_forget(p, s);
            }
        }
        p->pid = 0;
    }
    return PyLong_FromLong(n);
}

/* _core.spill_pool_info(prefix): [(file size, state, holder), ...] of this
 * process's pooled files of the queue (tests, statistics). */
static PyObject *spill_pool_info(PyObject *mod, PyObject *arg)
{
    (void)mod;
    const char *prefix = PyUnicode_AsUTF8(arg);
    if (!prefix)
        return NULL;
    il_pool_t *p = pool_find(prefix, 0);
    PyObject *list = PyList_New(0);
    if (!list || !p)
        return list;
    for (int i = 0; i < IL_POOL_SLOTS; i++) {
        pool_slot_t *s = &p->slot[i];
        if (!s->addr || s->creating)
            continue;
        il_pool_trailer_t *t = trailer(s->addr, s->size);
        PyObject *e = Py_BuildValue(
            "(KII)", (unsigned long long)s->size,
            (unsigned)atomic_load_explicit(&t->state, memory_order_acquire),
            (unsigned)atomic_load_explicit(&t->holder, memory_order_relaxed));
        if (!e || PyList_Append(list, e) < 0) {
            Py_XDECREF(e);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(e);
    }
    return list;
}

static PyMethodDef pool_methods[] = {
    {"spill_pool_drop", spill_pool_drop, METH_O, NULL},
    {"spill_pool_info", spill_pool_info, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

int il_pool_register(PyObject *m)
{
    static int atfork_done;
    if (!atfork_done) {
        if (pthread_atfork(pool_before_fork, NULL, NULL) != 0) {
            PyErr_SetString(PyExc_RuntimeError, "pthread_atfork failed");
            return -1;
        }
        atfork_done = 1;
    }
    if (PyModule_AddIntConstant(m, "SPILL_POOL_SLOTS", IL_POOL_SLOTS) < 0)
        return -1;
    return PyModule_AddFunctions(m, pool_methods);
}
