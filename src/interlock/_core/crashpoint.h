/*
 * crashpoint.h -- named places where a test can make the process die.
 *
 * Every step of the protocols that matters (after taking a lock, after
 * copying a payload, before publishing, ...) is named here.  The points are
 * compiled in only in a test build (IL_CRASHPOINTS, set by setup.py when
 * INTERLOCK_TEST_BUILD=1, or by the crash-point tests' own build): in a
 * normal build IL_CRASH() is empty and nothing can arm a point, so no
 * environment can make an application _exit(77).  In a test build a point
 * is inert unless armed: one relaxed load of a global and a branch
 * predicted not taken.  Armed (the environment variable
 * INTERLOCK_CRASH_AT="name[:n]" read at import, or _core._crash_arm(name,
 * n) in a forked child), the n-th time (default 1st) the process reaches
 * the point it calls _exit(CRASH_EXIT) on the spot, as abruptly as SIGKILL:
 * no unlock, no Python cleanup, no atexit.  _core.CRASHPOINTS says which
 * build this is; the Python layer's points (_crash.py) arm only in a test
 * build too.
 *
 * The test matrix (tests/test_crash_points.py) is generated from
 * _core.crash_points(), so a point added to the list below is tested.
 */
#ifndef INTERLOCK_CRASHPOINT_H
#define INTERLOCK_CRASHPOINT_H

#include <stdatomic.h>

#define IL_CRASH_EXIT 77

/* X(identifier, "name", "what the process holds when it dies there") */
#define IL_CRASH_POINTS(X)                                                                   \
    X(RING_PUT_LOCKED, "ring.put.locked", "producer lock held, nothing written")             \
    X(RING_PUT_HEADER, "ring.put.header", "record header written, payload not")             \
    X(RING_PUT_PAYLOAD, "ring.put.payload", "record written, not published")                \
    X(RING_PUT_PUBLISHED, "ring.put.published", "tail published, producer lock still held") \
    X(RING_PUT_UNLOCKED, "ring.put.unlocked", "lock released, consumers not woken")         \
    X(RING_GET_LOCKED, "ring.get.locked", "consumer lock held, nothing read")               \
    X(RING_GET_COPIED, "ring.get.copied", "record copied out, head not published")          \
    X(RING_GET_PUBLISHED, "ring.get.published", "head published, consumer lock still held") \
    X(RING_GET_UNLOCKED, "ring.get.unlocked", "lock released, producers not woken")         \
    X(RING_SPILL_WRITTEN, "ring.spill.written", "large item written to an unnamed spill file")  \
    X(RING_SPILL_LINKED, "ring.spill.linked", "spill file named, its record not published")  \
    X(RING_SPILL_TAKEN, "ring.spill.taken", "spill record consumed, its file not yet mapped") \
    X(RING_OVF_CREATED, "ring.ovf.created", "overflow block file made, nothing published")  \
    X(RING_OVF_PASSED, "ring.ovf.passed", "overflow block consumed, its file not removed")   \
    X(RING_SHUTDOWN_LOCKED, "ring.shutdown.locked", "producer lock held, shutdown flag not set") \
    X(RING_SHUTDOWN_SET, "ring.shutdown.set", "shutdown flag set, producer lock still held") \
    X(MUTEX_LOCKED, "mutex.locked", "lock word taken, owner hints not written")             \
    X(MUTEX_UNLOCK_BEGIN, "mutex.unlock.begin", "about to release")                         \
    X(MUTEX_UNLOCK_RELEASED, "mutex.unlock.released", "word released, waiters not woken")  \
    X(MUTEX_HANDOFF_CLEARED, "mutex.handoff.cleared", "releasing a Lock held by anyone: owner_tid cleared, word not") \
    X(SYNC_GUARD_LOCKED, "sync.guard.locked", "sync primitive's guard held, state untouched")   \
    X(SYNC_COMMIT_LOGGED, "sync.commit.logged", "redo log published, nothing applied")        \
    X(SYNC_COMMIT_APPLYING, "sync.commit.applying", "first word of the redo log applied")     \
    X(SYNC_COMMIT_APPLIED, "sync.commit.applied", "redo log applied, not yet retired")   \
    X(EVENT_SET_STORED, "event.set.stored", "event set (flag + generation), waiters not woken")

enum {
#define IL_CP_ENUM(id, name, what) IL_CP_##id,
    IL_CRASH_POINTS(IL_CP_ENUM)
#undef IL_CP_ENUM
    IL_CP_COUNT
};

const char *il_crash_name(int id);
const char *il_crash_what(int id);
/* Arm the point `name` (NULL or "": disarm).  0, or -1 for an unknown name;
 * in a normal build -2: no point can be armed. */
int il_crash_arm(const char *spec, long nth);

#ifdef IL_CRASHPOINTS
#define IL_CRASHPOINTS_BUILD 1
/* -1 when disarmed.  relaxed: set once before the workload runs (at import
 * or right after fork), read by the same process. */
extern _Atomic int il_crash_armed;
void il_crash_hit(int id);

#define IL_CRASH(id)                                                                      \
    do {                                                                                  \
        if (__builtin_expect(atomic_load_explicit(&il_crash_armed, memory_order_relaxed) == \
                                 IL_CP_##id,                                              \
                             0))                                                          \
            il_crash_hit(IL_CP_##id);                                                     \
    } while (0)
#else
#define IL_CRASHPOINTS_BUILD 0
#define IL_CRASH(id) ((void)IL_CP_##id)
#endif

#endif
