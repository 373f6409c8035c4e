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
 * the file (ORPHAN). */
void il_pool_release(il_pool_trailer_t *t, const char *path, uint32_t gen);

#endif
