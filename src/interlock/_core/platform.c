/* platform.c -- futex, clocks, thread identity and liveness (see platform.h). */
#define _GNU_SOURCE
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int64_t il_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t il_deadline_after(double seconds)
{
    if (!(seconds < 9.0e9)) /* +inf, or beyond any useful wait (~285 years) */
        return IL_FOREVER;
    return il_now_ns() + (int64_t)(seconds * 1e9);
}

int il_futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000LL;
        ts.tv_nsec = timeout_ns % 1000000000LL;
        tsp = &ts;
    }
    /* FUTEX_WAIT (shared): the relative timeout is measured on CLOCK_MONOTONIC. */
    long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, tsp, NULL, 0);
    if (r == 0)
        return IL_OK;
    if (errno == ETIMEDOUT)
        return IL_TIMEDOUT;
    if (errno == EINTR)
        return IL_INTR;
    return IL_OK; /* EAGAIN: value changed before we slept */
}

int il_futex_wake(_Atomic uint32_t *word, int n)
{
    long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n, NULL, NULL, 0);
    return r > 0 ? (int)r : 0;
}

int il_futex_clear_wake_all(_Atomic uint32_t *word, uint32_t bits)
{
    /* FUTEX_WAKE_OP with both words the same: under the futex's hash-bucket
     * lock (which FUTEX_WAIT's compare-and-queue also takes), *word &= ~bits,
     * then wake up to INT_MAX sleepers of it; the compare's second wake
     * (up to 0 more, at least one in practice) changes nothing: they are all
     * woken already.  nr_wake2 travels in the timeout argument. */
    long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_OP, INT_MAX, (void *)0,
                     (uint32_t *)word, FUTEX_OP(FUTEX_OP_ANDN, (int)bits, FUTEX_OP_CMP_EQ, 0));
    return r < 0 ? -1 : (int)r;
}

/* Per-thread identity cache.  Reset in the child after fork(): the child's
 * only thread is the one that forked, and it has a new TID. */
__thread il_tls_t il_tls __attribute__((tls_model("initial-exec"))); /* (platform.h) */
_Atomic uint32_t il_proc_pid; /* platform.h: read inline by il_self_pid_fast */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void after_fork_child(void)
{
    il_tls.tid = 0;
    il_tls.start = 0;
    atomic_store_explicit(&il_proc_pid, 0, memory_order_relaxed); /* (see platform.h) */
}

static void install_atfork(void) { pthread_atfork(NULL, NULL, after_fork_child); }

uint32_t il_self_tid_slow(void)
{
    if (il_tls.tid == 0) {
        pthread_once(&atfork_once, install_atfork);
        il_tls.tid = (uint32_t)syscall(SYS_gettid);
    }
    return il_tls.tid;
}

uint32_t il_self_pid(void)
{
    uint32_t p = atomic_load_explicit(&il_proc_pid, memory_order_relaxed); /* (platform.h) */
    if (__builtin_expect(p == 0, 0)) {
        pthread_once(&atfork_once, install_atfork);
        p = (uint32_t)getpid();
        atomic_store_explicit(&il_proc_pid, p, memory_order_relaxed); /* same value from any thread */
    }
    return p;
}

int il_task_stat(uint32_t tid, uint64_t *start, char *state)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%u/stat", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ESRCH ? 0 : -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0; /* the task went away between open and read */
    buf[n] = 0;
    /* comm (field 2) may hold spaces and parentheses: parse after the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return -1;
    p += 2;
    if (state)
        *state = *p;
    /* p is at field 3 (state); starttime is field 22, 19 fields further. */
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p)
            return -1;
        p++;
    }
    if (start)
        *start = strtoull(p, NULL, 10);
    return 1;
}

uint64_t il_self_start_slow(void)
{
    if (il_tls.start == 0) {
        uint64_t s = 0;
        if (il_task_stat(il_self_tid(), &s, NULL) != 1 || s == 0)
            s = 1; /* unknown: never 0, so that "0 = no owner" stays unambiguous */
        il_tls.start = s;
    }
    return il_tls.start;
}

int il_task_alive(uint32_t tid, uint64_t start)
{
    uint64_t s = 0;
    char st = '?';
    int r = il_task_stat(tid, &s, &st);
    if (r < 0)
        return 1; /* cannot tell (permissions, odd /proc): never steal from the living */
    if (r == 0)
        return 0;
    if (st == 'Z' || st == 'X')
        return 0;
    /* Compared on the low 32 bits: the lock's hint keeps no more (mutex.h);
     * ticks since boot wrap there after ~497 days at 100 Hz. */
    if (start > 1 && (s & 0xffffffffu) != (start & 0xffffffffu))
        return 0; /* the TID was reused by another task */
    return 1;
}

int il_ncpus(void)
{
    /* CPUs online, not our own affinity: a process pinned to one CPU may
     * still wait for a peer pinned to another, where spinning pays.  The
     * spinners adapt (binding.h, il_spin_budget) when the peer shares our CPU. */
    static _Atomic int cached; /* relaxed: idempotent computation */
    int n = atomic_load_explicit(&cached, memory_order_relaxed);
    if (n == 0) {
        n = (int)sysconf(_SC_NPROCESSORS_ONLN);
        if (n <= 0)
            n = 1;
        atomic_store_explicit(&cached, n, memory_order_relaxed);
    }
    return n;
}
