/*
 * platform.h -- the few Linux facts the core stands on.
 *
 * Atomics: C11 <stdatomic.h>.  Every atomic operation in the core names its
 * memory order at the call site and says why in a comment; nothing relies on
 * the seq_cst default by accident.
 *
 * Futexes: the words live in MAP_SHARED memory that several processes map at
 * different addresses, so we never use FUTEX_PRIVATE_FLAG (the kernel must
 * key the wait queue on the page, not on the virtual address).
 *
 * Identity: a waiter must be able to tell whether the owner of a word is
 * still alive.  We identify a thread by its TID (unique in the PID namespace)
 * plus its start time in clock ticks since boot (field 22 of
 * /proc/TID/stat), which guards against the TID being reused.  Both are
 * cached per thread and reset in a forked child.
 */
#ifndef INTERLOCK_PLATFORM_H
#define INTERLOCK_PLATFORM_H

#if !defined(__linux__)
#error "interlock's core needs Linux (futex, /proc, /dev/shm)"
#endif

#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>
#include <time.h>

#define IL_CACHELINE 64

#if defined(__x86_64__) || defined(__i386__)
#define il_cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define il_cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define il_cpu_relax() atomic_signal_fence(memory_order_seq_cst)
#endif

/* Results shared by the lock, the eventcount and the ring. */
enum {
    IL_OK = 0,
    IL_TIMEDOUT = 1,     /* the deadline passed */
    IL_INTR = 2,         /* a signal arrived: the caller runs handlers, then retries */
    IL_DEADLK = 3,       /* the calling thread already owns the lock */
    IL_PERM = 4,         /* release by a thread that does not own the lock */
    IL_OWNER_DIED = 5,   /* acquired, but the previous owner died holding it */
};

/* Deadlines are absolute CLOCK_MONOTONIC nanoseconds; IL_FOREVER never passes. */
#define IL_FOREVER INT64_MAX
int64_t il_now_ns(void);
/* seconds (>= 0, may be +inf) -> absolute deadline */
int64_t il_deadline_after(double seconds);

/* futex(2) on a shared word.  Returns 0 when woken (or spuriously), or
 * IL_TIMEDOUT / IL_INTR; EAGAIN (the word no longer holds `expected`) is 0. */
int il_futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns);
/* Returns how many sleepers were woken (0 on error). */
int il_futex_wake(_Atomic uint32_t *word, int n);
/* Atomically with any FUTEX_WAIT on `word` (one FUTEX_WAKE_OP): clear
 * `bits` (at most 0xfff) in it and wake every sleeper.  How many woke, or
 * -1 (no FUTEX_WAKE_OP: nothing was changed). */
int il_futex_clear_wake_all(_Atomic uint32_t *word, uint32_t bits);

/* The calling thread's TID and start time, cached per thread (reset in
 * the child after fork).  Every lock and queue operation reads them (the
 * owner word and hints, mutex.h), so the fast path reads them inline:
 * initial-exec TLS is one %fs-relative load, where the default model of a
 * shared object calls __tls_get_addr each time.  It takes 16 bytes of the
 * static TLS that glibc keeps spare for modules loaded later (dlopen). */
typedef struct il_tls {
    uint32_t tid;   /* 0: not read yet */
    uint32_t _pad;
    uint64_t start; /* 0: not read yet; 1: unknown */
} il_tls_t;
extern __thread il_tls_t il_tls __attribute__((tls_model("initial-exec")));
uint32_t il_self_tid_slow(void);
uint64_t il_self_start_slow(void);
static inline uint32_t il_self_tid(void)
{
    uint32_t t = il_tls.tid;
    return __builtin_expect(t != 0, 1) ? t : il_self_tid_slow();
}
static inline uint64_t il_self_start(void)
{
    uint64_t s = il_tls.start;
    return __builtin_expect(s != 0, 1) ? s : il_self_start_slow();
}
uint32_t il_self_pid(void);
/* The same, inline: the per-call "is this a fork child's first use?" check
 * of every object (binding.h). */
extern _Atomic uint32_t il_proc_pid;
static inline uint32_t il_self_pid_fast(void)
{
    /* relaxed: the cache is only ever written with this process's pid (by
     * whichever thread reads it first) or 0 (by the at-fork handler, in the
     * child's only thread); any value read is one of those, and 0 takes the
     * slow path.  No other memory is published through it. */
    uint32_t p = atomic_load_explicit(&il_proc_pid, memory_order_relaxed);
    return __builtin_expect(p != 0, 1) ? p : il_self_pid();
}

/* Is the thread or process `tid` alive and the same one that started at
 * `start` (0 = unknown, skip that check)?  A zombie counts as dead: a
 * SIGKILLed child that its parent has not reaped yet holds nothing. */
int il_task_alive(uint32_t tid, uint64_t start);
/* Read start time and state of /proc/TID/stat.  Returns 0 if absent. */
int il_task_stat(uint32_t tid, uint64_t *start, char *state);

/* Number of CPUs online; spinning is pointless on one. */
int il_ncpus(void);

#endif
