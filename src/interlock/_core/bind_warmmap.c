/*
 * bind_warmmap.c -- the receiver's warm mappings of pooled spill files
 * (docs/design/spill.md, "Warm mappings").
 *
 * A pooled spill file comes back again and again: its producer writes the
 * next item of about its size into it once the receiver lets go.  Mapped
 * afresh for each item, the receiver paid for its page tables each time:
 * every 64 KiB touched is a page fault, and the munmap at the release
 * tears the entries down again.  On the VM of the committed runs, mapping
 * a 1 MiB tmpfs file, reading it and unmapping it took about 110 us more
 * than reading the same pages through a mapping already made (a probe:
 * 157-165 us against 43-47 us); the producer's side has had this from the
 * start (its pool keeps its files mapped).
 *
 * So a receiver keeps, per process, up to IL_WARM_SLOTS mappings of pooled
 * files it received, once their items are let go (the file handed back
 * FREE, spillpool.h).  When a later item names a file that a kept mapping
 * maps, that mapping carries the item: no open, no mmap, and the pages the
 * receiver touched before are still in its page tables.
 *
 * Which file a name is: one fstatat() of the name (no descriptor), checked
 * as an opened file is (a regular file of ours, mode 0600, the size the
 * reference gives), then compared with a kept mapping of the same name,
 * device, inode and size.  The kept mapping holds its inode alive, so no
 * other file can have that inode meanwhile, and the name carries the
 * producer's random token, so it names no other file either.  A mismatch
 * is a miss: the file is opened and mapped as before.
 *
 * Lifetime (every step under the GIL; all process-local state):
 *
 *   empty -> BUSY     a miss maps the file and keeps the mapping (room
 *                     permitting: at most IL_WARM_SLOTS, at most
 *                     IL_WARM_MAX_BYTES and a sixteenth of the spill
 *                     directory's size in all); an idle one is evicted,
 *                     least recently used first, to make room
 *   IDLE -> BUSY      a hit
 *   BUSY -> IDLE      the item's Mapping goes, il_pool_release handed the
 *                     file back FREE, the file still pooled by its producer
 *   BUSY -> empty     handed back otherwise (the producer forgot it: ORPHAN;
 *                     or this process forked while holding it: DROPPED):
 *                     unmapped, as before
 *   IDLE -> empty     the sweep at each pooled get: the producer forgot the
 *                     file (ORPHAN, DROPPED in its trailer) or it was idle
 *                     for IL_WARM_IDLE_NS; the process's last handle of
 *                     the queue detaches (spill_pool_drop); a new file of
 *                     this process found no room (il_pool_shrink); fork,
 *                     in the child
 *
 * What a kept mapping costs: an idle mapping keeps its file's memory until
 * one of the steps above.  While the producer pools the file, it keeps
 * that memory anyway; once it forgets it (detach, eviction), the memory
 * stays with the receiver until its next pooled get or its detach: at most
 * the cap above, per receiving process.
 *
 * Fork: the child's copies of idle mappings are unmapped in the child
 * (pthread_atfork) and its table emptied; a busy one's Mapping, inherited,
 * unmaps its own copy (its entry's id is gone from the child's table).  In
 * the parent, a busy mapping held across the fork is handed back DROPPED
 * (spillpool.h) and unmapped; idle ones stay usable: the child has none.
 *
 * A process killed with kept mappings holds nothing shared: its mappings
 * go with it, the files' state words say FREE (or BUSY with its pid as
 * holder, for an item it held, as before).  No atomics here but the loads
 * of a trailer's state word (acquire, as everywhere a state is read).
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "bind_codec.h"
#include "spillpool.h"

#define IL_WARM_MAX_BYTES (32ull << 20)
#define IL_WARM_IDLE_NS (10ull * 1000000000ull) /* as the producer's pool */

typedef struct {
    char *addr; /* NULL: empty */
    uint64_t size;
    dev_t dev;
    ino_t ino;
    uint64_t id; /* this process's sequence number of the entry (a Mapping's check) */
    int busy;    /* an item's Mapping uses it */
    uint64_t idle_since;
    char path[IL_SPILL_PATH_MAX];
} warm_t;

static warm_t warm[IL_WARM_SLOTS];
static uint64_t warm_bytes;   /* of the entries above */
static uint64_t warm_next_id; /* ids start at 1 */
static pid_t warm_pid;        /* the process the table is of */
static uint64_t warm_cap;     /* 0: not computed yet */
static unsigned long long warm_hits, warm_misses;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static il_pool_trailer_t *warm_trailer(const warm_t *w)
{
    return (il_pool_trailer_t *)(w->addr + w->size - sizeof(il_pool_trailer_t));
}

static void warm_clear(warm_t *w, int unmap)
{
    if (unmap)
        munmap(w->addr, (size_t)w->size);
    warm_bytes -= w->size;
    w->addr = NULL;
    w->id = 0;
    w->busy = 0;
}

/* A table inherited by a process that did not make it (a fork child whose
 * fork skipped the pthread_atfork handlers): forget it; its idle mappings
 * are this process's copies. */
static void warm_own(void)
{
    pid_t me = getpid();
    if (warm_pid == me)
        return;
    for (int i = 0; i < IL_WARM_SLOTS; i++)
        if (warm[i].addr)
            warm_clear(&warm[i], !warm[i].busy);
    warm_pid = me;
}

static void warm_after_fork_child(void)
{
    warm_pid = 0;
    warm_own();
}

/* The cap: IL_WARM_MAX_BYTES, or a sixteenth of a smaller spill directory
 * (Docker's /dev/shm is 64 MiB by default: 4 MiB). */
static uint64_t warm_limit(const char *path)
{
    if (warm_cap)
        return warm_cap;
    warm_cap = IL_WARM_MAX_BYTES;
    char dir[IL_SPILL_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        slash[slash == dir] = '\0'; /* the directory ("/" kept for a file in /) */
        struct statvfs sv;
        if (statvfs(dir, &sv) == 0 && sv.f_blocks) {
            uint64_t part = (uint64_t)sv.f_blocks * (uint64_t)sv.f_frsize / 16;
            if (part < warm_cap)
                warm_cap = part;
        }
    }
    return warm_cap;
}

void il_warm_sweep(void)
{
    warm_own();
    uint64_t now = 0;
    for (int i = 0; i < IL_WARM_SLOTS; i++) {
        warm_t *w = &warm[i];
        if (!w->addr || w->busy)
            continue;
        /* acquire: as every reader of a state word (spillpool.h) */
        uint32_t st = atomic_load_explicit(&warm_trailer(w)->state, memory_order_acquire);
        if (!now)
            now = mono_ns();
        if ((st & (IL_POOL_ORPHAN | IL_POOL_DROPPED)) || now - w->idle_since > IL_WARM_IDLE_NS)
            warm_clear(w, 1);
    }
}

int il_warm_drop(const char *prefix)
{
    warm_own();
    size_t n = prefix ? strlen(prefix) : 0;
    int dropped = 0;
    for (int i = 0; i < IL_WARM_SLOTS; i++) {
        warm_t *w = &warm[i];
        if (w->addr && !w->busy && (!prefix || strncmp(w->path, prefix, n) == 0)) {
            warm_clear(w, 1);
            dropped++;
        }
    }
    return dropped;
}

char *il_warm_take(const char *path, const struct stat *st, uint64_t size, il_warm_ref_t *ref)
{
    warm_own();
    for (int i = 0; i < IL_WARM_SLOTS; i++) {
        warm_t *w = &warm[i];
        if (w->addr && !w->busy && w->size == size && w->dev == st->st_dev &&
            w->ino == st->st_ino && strcmp(w->path, path) == 0) {
            w->busy = 1;
            ref->slot = i;
            ref->id = w->id;
            warm_hits++;
            return w->addr;
        }
    }
    warm_misses++;
    return NULL;
}

int il_warm_add(const char *path, const struct stat *st, char *addr, uint64_t size,
                il_warm_ref_t *ref)
{
    warm_own();
    uint64_t cap = warm_limit(path);
    if (size > cap || strlen(path) >= IL_SPILL_PATH_MAX)
        return 0;
    int free_slot = -1;
    for (;;) {
        free_slot = -1;
        int lru = -1;
        for (int i = 0; i < IL_WARM_SLOTS; i++) {
            warm_t *w = &warm[i];
            if (!w->addr) {
                if (free_slot < 0)
                    free_slot = i;
            } else if (!w->busy && (lru < 0 || w->idle_since < warm[lru].idle_since)) {
                lru = i;
            }
        }
        if (free_slot >= 0 && warm_bytes + size <= cap)
            break;
        if (lru < 0)
            return 0; /* every kept mapping is in use: this one is not kept */
        warm_clear(&warm[lru], 1);
    }
    warm_t *w = &warm[free_slot];
    w->addr = addr;
    w->size = size;
    w->dev = st->st_dev;
    w->ino = st->st_ino;
    w->id = ++warm_next_id;
    w->busy = 1;
    snprintf(w->path, sizeof w->path, "%s", path);
    warm_bytes += size;
    ref->slot = free_slot;
    ref->id = w->id;
    return 1;
}

int il_warm_put_back(const il_warm_ref_t *ref, char *addr, int reusable)
{
    if (ref->slot < 0 || ref->slot >= IL_WARM_SLOTS)
        return 0;
    warm_own();
    warm_t *w = &warm[ref->slot];
    if (w->id != ref->id || w->addr != addr || !w->busy)
        return 0; /* not this table's (a fork child's copy): unmap it */
    if (!reusable) {
        warm_clear(w, 0); /* the caller unmaps */
        return 0;
    }
    w->busy = 0;
    w->idle_since = mono_ns();
    return 1;
}

/* _core.spill_warm_info(): (hits, misses, [(path, size, busy), ...]) of
 * this process's kept mappings (tests, statistics). */
static PyObject *spill_warm_info(PyObject *mod, PyObject *unused)
{
    (void)mod;
    (void)unused;
    warm_own();
    PyObject *list = PyList_New(0);
    if (!list)
        return NULL;
    for (int i = 0; i < IL_WARM_SLOTS; i++) {
        warm_t *w = &warm[i];
        if (!w->addr)
            continue;
        PyObject *e = Py_BuildValue("(sKi)", w->path, (unsigned long long)w->size, w->busy);
        if (!e || PyList_Append(list, e) < 0) {
            Py_XDECREF(e);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(e);
    }
    return Py_BuildValue("(KKN)", warm_hits, warm_misses, list);
}

/* _core.spill_warm_drop(): unmap every idle kept mapping; how many. */
static PyObject *spill_warm_drop(PyObject *mod, PyObject *unused)
{
    (void)mod;
    (void)unused;
    return PyLong_FromLong(il_warm_drop(NULL));
}

static PyMethodDef warm_methods[] = {
    {"spill_warm_info", spill_warm_info, METH_NOARGS, NULL},
    {"spill_warm_drop", spill_warm_drop, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

int il_warm_register(PyObject *m)
{
    static int atfork_done;
    if (!atfork_done) {
        if (pthread_atfork(NULL, NULL, warm_after_fork_child) != 0) {
            PyErr_SetString(PyExc_RuntimeError, "pthread_atfork failed");
            return -1;
        }
        atfork_done = 1;
    }
    warm_pid = getpid();
    if (PyModule_AddIntConstant(m, "SPILL_WARM_SLOTS", IL_WARM_SLOTS) < 0)
        return -1;
    return PyModule_AddFunctions(m, warm_methods);
}
