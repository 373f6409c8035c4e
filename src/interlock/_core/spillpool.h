/*
 * spillpool.h -- warm spill files: a producer's spill files kept and reused
 * once their receiver has let go of them (docs/design/spill.md, "The pool").
 *
 * A spilled item costs, in a fresh file, the allocation and zeroing of its
 * pages (fallocate), their faults on both sides, and their freeing when the
 * receiver drops the item: for a 256 MiB array about 6x the memcpy itself.
 * A pooled file is written through the producer's own mapping, whose pages
 * are already there, and the receiver hands it back when it lets go of the
 * item; the next item of about its size goes into it with one memcpy.
 *
 * Who may write the file is decided by one word in its trailer (the last 64
 * bytes), `state`:
 *
 *   FREE     nobody uses it: the producer may write the next item into it
 *   BUSY     an item is in it: in flight in the ring, or held by a receiver
 *            (holder: its pid, once taken)
 *   DROPPED  its receiver forked while it held the item (the child shares
 *            the pages): it removed the name; the producer forgets the file
 *   |ORPHAN  the producer forgot the file (detach, eviction): whoever takes
 *            or holds it removes the name when done
 *
 * Transitions: producer FREE -> BUSY (plain store: it alone moves a FREE
 * file, and the ring's release/acquire on tail publishes it with the item);
 * receiver BUSY -> FREE or DROPPED (exchange, acq_rel: its last access of
 * the item happens before the producer's next write; and it learns whether
 * ORPHAN was set); producer |= ORPHAN (fetch_or, acq_rel: it removes the
 * name only when it saw FREE, i.e. nobody will ever open it again).  Of the
 * two that race at the end, exactly one removes the name.
 */
#ifndef INTERLOCK_SPILLPOOL_H
#define INTERLOCK_SPILLPOOL_H

#include <stdatomic.h>
#include <stdint.h>

#define IL_SPILL_POOLED 1u /* il_spill_ref_t.flags: the file ends with a trailer */

#define IL_POOL_FREE 0u
#define IL_POOL_BUSY 1u
#define IL_POOL_DROPPED 2u
#define IL_POOL_ORPHAN 4u

#define IL_POOL_MAGIC 0x4c4f4f50u /* "POOL" */

/* The last 64 bytes of a pooled file.  The two words are written by two
 * processes: they share the file's last cache line, but each is written
 * once per item, not in a loop. */
typedef struct {
    uint32_t magic;
    _Atomic uint32_t state;
    _Atomic uint32_t holder; /* the receiver's pid, 0 while in flight */
    uint32_t _pad[13];
} il_pool_trailer_t;

_Static_assert(sizeof(il_pool_trailer_t) == 64, "pool trailer is 64 bytes");

/* Bumped before every fork() of this process (pthread_atfork): a pooled
 * item received before a fork may be shared with the child, so it is never
 * handed back for reuse (DROPPED). */
extern _Atomic uint32_t il_pool_fork_gen;

/* Receiver side: release a pooled file the receiver is done with (its
 * trailer mapped at `t`): FREE, or DROPPED (and the name removed) if the
 * process forked since `gen`; the name removed too if the producer forgot
 * the file (ORPHAN).  1 if the file is FREE and still its producer's (a
 * later item may come in it), else 0. */
int il_pool_release(il_pool_trailer_t *t, const char *path, uint32_t gen);

/* The receiver's warm mappings (bind_warmmap.c; spill.md, "Warm
 * mappings"): mappings of pooled files kept once their items are let go,
 * to carry later items in the same files.  All under the GIL. */
#define IL_WARM_SLOTS 8
typedef struct {
    int slot; /* -1: not a kept mapping */
    uint64_t id;
} il_warm_ref_t;
struct stat;
/* The kept idle mapping of the file `path` names (st: fstatat of the
 * name, checked as an opened file is), now in use (*ref), or NULL. */
char *il_warm_take(const char *path, const struct stat *st, uint64_t size, il_warm_ref_t *ref);
/* Keep a fresh mapping of a pooled file, in use now (*ref): 1, or 0 when
 * there is no room (then it is not kept). */
int il_warm_add(const char *path, const struct stat *st, char *addr, uint64_t size,
                il_warm_ref_t *ref);
/* The item's mapping goes; `reusable`: il_pool_release's result.  1: kept
 * (idle), do not unmap; 0: unmap it. */
int il_warm_put_back(const il_warm_ref_t *ref, char *addr, int reusable);
/* Unmap idle kept mappings of files their producer forgot, or unused for
 * 10 s. */
void il_warm_sweep(void);
/* Unmap idle kept mappings of the queue whose spill prefix is `prefix`
 * (NULL: all); how many. */
int il_warm_drop(const char *prefix);

#endif
