/*
 * ring.h -- the shared FIFO: a byte ring of length-prefixed records, with a
 * producer side and a consumer side each serialised by its own robust mutex.
 *
 * The algorithm is the two-lock queue of Michael & Scott (PODC 1996) laid
 * over a single-producer/single-consumer byte ring (Lamport 1983; the cached
 * opposite index is Rigtorp's SPSCQueue trick): producers take `plock`, so
 * among themselves they are one producer; consumers take `clock`, so they are
 * one consumer.  Between the two sides there is no lock at all, only the
 * `tail` word (written by producers) and the `head` word (written by
 * consumers), each on its own cache line.  With one producer and one
 * consumer, neither lock is ever contended.
 *
 * Positions.  `tail` and `head` each pack two 32-bit counters:
 *
 *   bits 63..32  number of records ever published (tail) / consumed (head),
 *                modulo 2^32
 *   bits 31..0   byte position, modulo 2^32; the slot is pos & (size - 1)
 *
 * so that one atomic store publishes a record and counts it: qsize() =
 * count(tail) - count(head) is exact, and no crash can leave the byte
 * position and the count disagreeing.  size is a power of two <= 2^30 and
 * records are 8-byte aligned, so a record header never wraps (the payload
 * may, and is copied in two pieces).
 *
 * Invariants (I1-I4 are kept by every step, at every instant):
 *   I1  0 <= pos(tail) - pos(head) <= capacity <= size   (mod 2^32)
 *   I2  bytes in [pos(head), pos(tail)) are whole, committed records
 *   I3  bytes outside it belong to nobody: a producer that dies while
 *       writing there leaves garbage that the next producer overwrites
 *   I4  cached_head (under plock) and cached_tail (under clock) lag the real
 *       words: they only ever make a side think there is less room / data
 *
 * put:  plock; check shutdown, room (cached_head, then head); write header and
 *       payload at pos(tail); tail := tail + (1, record size) [release];
 *       unlock; notify not_empty.
 * get:  clock; check IMMEDIATE, data (cached_tail, then tail); read header, copy the
 *       payload out; head := head + (1, record size) [release]; unlock;
 *       notify not_full.
 *
 * The commit point of a put is the store to tail; of a get, the store to
 * head.  Death before it: nothing happened (the next holder of the lock takes
 * it over, see mutex.h, and starts from the published word).  Death after it:
 * it happened.  Hence no committed message is lost or duplicated, and a
 * half-written one is discarded.  (docs/design/queue.md walks every step.)
 */
#ifndef INTERLOCK_RING_H
#define INTERLOCK_RING_H

#include <string.h>

#include "eventcount.h"
#include "mutex.h"

#define IL_RING_MAGIC 0x474e4952u /* "RING" */
#define IL_RING_VERSION 5u /* 2: pooled spill files; 3: packed records; 4: armed
                               * eventcounts (eventcount.h); 5: a spill file's
                               * buffer at its source's page offset (bind_codec.c) */
#define IL_RING_MAX_SIZE (1u << 30)
/* flags bits.  Each is set once (fetch_or) and never cleared: a state
 * table of the two bits:
 *   neither              open
 *   SHUTDOWN             shut down: put refused; get drains, then refuses
 *   SHUTDOWN|IMMEDIATE   shut down at once: put and get refused; the records
 *                        still in [head, tail) are discarded (they stay in
 *                        the ring, unread: qsize() is 0, and they count as
 *                        done for JoinableQueue.join, see il_ring_unfinished)
 *   IMMEDIATE alone      never (both are set by one fetch_or)
 * (IL_RING_CLOSED is the older name of IL_RING_SHUTDOWN.) */
#define IL_RING_SHUTDOWN 1u
#define IL_RING_IMMEDIATE 2u
#define IL_RING_CLOSED IL_RING_SHUTDOWN

/* Record kinds, in the record header.  Must match nothing in Python: the
 * C layer alone writes and reads them. */
enum { IL_REC_BYTES = 1, IL_REC_BYTEARRAY = 2, IL_REC_PICKLE = 3, IL_REC_SPILL = 4,
       IL_REC_NEXT = 5, /* overflow blocks only: the rest of this block is unused */
       IL_REC_PACKED = 6 /* a plain built-in value, packed without pickle (bind_pack.h) */ };

/* features (set at creation, never changed) */
#define IL_RING_OVERFLOW 1u /* unbounded: a full ring overflows into block files */

typedef struct il_rec {
    uint32_t len;   /* payload bytes after this header */
    uint8_t kind;   /* IL_REC_* */
    uint8_t _res;
    uint16_t nbufs; /* out-of-band pickle buffers; their u64 lengths open the payload */
} il_rec_t;

_Static_assert(sizeof(il_rec_t) == 8, "record header is 8 bytes");

/* The payload of an IL_REC_SPILL record: an item too large for the ring
 * (above the queue's spill threshold) lives in a file of its own, and this
 * fixed 32-byte reference travels through the ring in its place
 * (docs/design/spill.md).  The file is
 *     <spill prefix of the queue><pid in decimal>.<token in 16 hex digits>
 * and holds: the u64 lengths of the nbufs out-of-band buffers, the main part
 * (raw bytes or pickle stream, dlen bytes), then each buffer at the next
 * 64-aligned offset (so that a numpy array mapped from it is aligned).
 * Version 2 added the pooled files (flags). */
typedef struct il_spill_ref {
    uint8_t kind;    /* the item's own kind: IL_REC_BYTES, _BYTEARRAY or _PICKLE */
    uint8_t flags;   /* IL_SPILL_POOLED: a producer's pooled file, which ends
                        with a 64-byte trailer (spillpool.h); not removed by
                        its receiver but handed back */
    uint16_t nbufs;  /* out-of-band buffers (kind PICKLE) */
    uint32_t pid;    /* the producer that made the file (part of its name) */
    uint64_t token;  /* random (part of its name) */
    uint64_t dlen;   /* main part's bytes */
    uint64_t size;   /* the file's length */
} il_spill_ref_t;

_Static_assert(sizeof(il_spill_ref_t) == 32, "spill reference is 32 bytes");

typedef struct il_ring {
    /* line 0: configuration, written once at creation */
    uint32_t magic;
    uint32_t version;
    uint64_t size;     /* data bytes, power of two */
    uint64_t capacity; /* byte bound on pos(tail) - pos(head), <= size */
    uint64_t maxsize;  /* record-count bound, 1 .. 2^31 - 1 */
    _Atomic uint32_t flags; /* IL_RING_SHUTDOWN, IL_RING_IMMEDIATE */
    uint8_t _pad0[IL_CACHELINE - 36];

    /* lines 1-2: producer side */
    il_mutex_t plock;
    _Atomic uint64_t tail;
    uint64_t cached_head;       /* under plock */
    /* under plock: 0 only while the overflow is known to be empty (set to
     * 1 before a put into it publishes, back to 0 by a producer that finds
     * it drained), so that a put into the ring needs no look at the
     * overflow's words (overflow.md) */
    uint32_t ovf_busy;
    uint8_t _pad1[IL_CACHELINE - 20];

    /* lines 3-4: consumer side */
    il_mutex_t clock;
    _Atomic uint64_t head;
    uint64_t cached_tail;       /* under clock */
    uint8_t _pad2[IL_CACHELINE - 16];

    /* lines 5-7: wake-ups */
    il_eventcount_t not_empty;  /* consumers sleep here */
    il_eventcount_t not_full;   /* producers sleep here */
    il_eventcount_t all_done;   /* JoinableQueue.join() sleeps here */

    /* line 8: JoinableQueue: task_done() count, mod 2^32; unfinished tasks
     * = count(tail) - done.  Derived from tail, so a crash cannot unbalance it. */
    _Atomic uint32_t done;
    /* spill files ever named for this queue, mod 2^32 (statistics, and the
     * last user's cleanup skips its directory listing while it is 0).  A
     * producer adds 1 *before* it names a file: a count is never behind the
     * files that exist (docs/design/spill.md). */
    _Atomic uint32_t spilled;
    /* records ever put into the overflow, mod 2^32 (statistics; relaxed) */
    _Atomic uint32_t ovf_items;
    uint32_t features;          /* IL_RING_OVERFLOW; written once, at creation */
    /* The overflow (docs/design/overflow.md): a FIFO of records in block
     * files of `size` bytes each, packed like tail and head (count, byte
     * position of an endless stream; block = pos / size).  otail is
     * written under plock, ohead under clock; both 0 while never used. */
    _Atomic uint64_t otail;
    _Atomic uint64_t ohead;
    uint8_t _pad3[IL_CACHELINE - 32];

    unsigned char data[]; /* size bytes */
} il_ring_t;

_Static_assert(sizeof(il_ring_t) == 9 * IL_CACHELINE, "ring header layout");

#define IL_POS(w) ((uint32_t)(w))
#define IL_CNT(w) ((uint32_t)((w) >> 32))
#define IL_PACK(cnt, pos) (((uint64_t)(uint32_t)(cnt) << 32) | (uint32_t)(pos))
#define IL_ALIGN8(n) (((n) + 7u) & ~(uint64_t)7u)

size_t il_ring_bytes(uint64_t size);
void il_ring_init(il_ring_t *r, uint64_t size, uint64_t capacity, uint64_t maxsize,
                  uint32_t features);

/* The overflow never holds more than this many bytes of records (so that
 * two live blocks never share a name: positions are mod 2^32). */
static inline uint64_t il_ovf_span_max(const il_ring_t *r) { return (1ull << 32) - 4 * r->size; }

/* Is the overflow in use (anything put there and not taken)?  acquire on
 * ohead: a producer that finds it drained may go back to the ring only
 * after the consumer's reads of the overflow (spill.md, FIFO). */
static inline int il_ovf_busy(il_ring_t *r, uint64_t otail)
{
    return otail != atomic_load_explicit(&r->ohead, memory_order_acquire);
}

static inline void il_ring_write(il_ring_t *r, uint32_t pos, const void *src, size_t n)
{
    size_t off = pos & (r->size - 1), first = r->size - off;
    if (n <= first) {
        memcpy(r->data + off, src, n);
    } else {
        memcpy(r->data + off, src, first);
        memcpy(r->data, (const char *)src + first, n - first);
    }
}

static inline void il_ring_read(il_ring_t *r, uint32_t pos, void *dst, size_t n)
{
    size_t off = pos & (r->size - 1), first = r->size - off;
    if (n <= first) {
        memcpy(dst, r->data + off, n);
    } else {
        memcpy(dst, r->data + off, first);
        memcpy((char *)dst + first, r->data, n - first);
    }
}

/* Under plock: is there room for `nrec` more records of `bytes` total? */
static inline int il_ring_room(il_ring_t *r, uint64_t tail, uint64_t bytes, uint32_t nrec)
{
    uint64_t h = r->cached_head;
    for (int fresh = 0;; fresh = 1) {
        uint32_t used = IL_POS(tail) - IL_POS(h);
        uint32_t count = IL_CNT(tail) - IL_CNT(h);
        if ((uint64_t)used + bytes <= r->capacity && (uint64_t)count + nrec <= r->maxsize)
            return 1;
        if (fresh)
            return 0;
        /* acquire: the consumer read the records before releasing their
         * bytes with its store to head; we may overwrite them only after. */
        h = atomic_load_explicit(&r->head, memory_order_acquire);
        r->cached_head = h;
    }
}

/* Under clock: is a record available?  Returns the tail to read up to. */
static inline int il_ring_has_data(il_ring_t *r, uint64_t head)
{
    /* (the range check only matters for a damaged header: a cached_tail
     * that I4 cannot have is not trusted, the real tail is read instead) */
    if (r->cached_tail != head &&
        (uint32_t)(IL_POS(r->cached_tail) - IL_POS(head)) <= r->capacity)
        return 1;
    /* acquire: the producer wrote the record before its release-store to
     * tail; reading the record after this load sees it whole. */
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    r->cached_tail = t;
    return t != head;
}

/* Lock-free predicates for waiters (bind_ring.c ring_wait, aio.c): may a get
 * succeed now / may a put of a record of `need` bytes (header included,
 * aligned) succeed now?  True once the queue is shut down, so that sleepers
 * wake and see it.  acquire loads: the condition is re-checked under the
 * side lock by the operation that follows anyway. */
static inline int il_ring_readable(il_ring_t *r)
{
    if (atomic_load_explicit(&r->flags, memory_order_acquire) & IL_RING_SHUTDOWN)
        return 1;
    if ((r->features & IL_RING_OVERFLOW) &&
        atomic_load_explicit(&r->otail, memory_order_acquire) !=
            atomic_load_explicit(&r->ohead, memory_order_acquire))
        return 1;
    return atomic_load_explicit(&r->tail, memory_order_acquire) !=
           atomic_load_explicit(&r->head, memory_order_acquire);
}

static inline int il_ring_writable(il_ring_t *r, uint64_t need)
{
    if (atomic_load_explicit(&r->flags, memory_order_acquire) & IL_RING_SHUTDOWN)
        return 1;
    if (r->features & IL_RING_OVERFLOW) {
        /* a put goes to the overflow when the ring is full: room there */
        uint64_t oh = atomic_load_explicit(&r->ohead, memory_order_acquire);
        uint64_t ot = atomic_load_explicit(&r->otail, memory_order_acquire);
        return (uint64_t)(uint32_t)(IL_POS(ot) - IL_POS(oh)) + need + r->size <=
               il_ovf_span_max(r);
    }
    uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    return (uint64_t)(uint32_t)(IL_POS(t) - IL_POS(h)) + need <= r->capacity &&
           (uint64_t)(uint32_t)(IL_CNT(t) - IL_CNT(h)) + 1 <= r->maxsize;
}

/* The count of a JoinableQueue's unfinished tasks: items put and not yet
 * marked done, as a signed difference (a task_done() of an item never got
 * may make it negative after an immediate shutdown; read as "none left").
 *
 * Open, or shut down but not immediately: count(tail) - done (every record
 * ever published is a task).  After shutdown(immediate=True) the records
 * still in the ring are discarded and count as done: count(head) - done, the
 * items consumers took and have not marked done.  One flag bit switches the
 * formula, so the discard has one commit point (the fetch_or that sets
 * IMMEDIATE): no second word to update, nothing a crash can leave half
 * counted.  A get that held clock across the fetch_or still commits its
 * head after it; its consumer will task_done() that item, so the count
 * stays right at every instant.  acquire loads: as qsize(). */
static inline int32_t il_ring_unfinished(il_ring_t *r)
{
    uint32_t d = atomic_load_explicit(&r->done, memory_order_acquire);
    /* (the overflow's counts with the ring's: overflow.md; 0 if never used) */
    if (atomic_load_explicit(&r->flags, memory_order_acquire) & IL_RING_IMMEDIATE)
        return (int32_t)(IL_CNT(atomic_load_explicit(&r->head, memory_order_acquire)) +
                         IL_CNT(atomic_load_explicit(&r->ohead, memory_order_acquire)) - d);
    return (int32_t)(IL_CNT(atomic_load_explicit(&r->tail, memory_order_acquire)) +
                     IL_CNT(atomic_load_explicit(&r->otail, memory_order_acquire)) - d);
}

#endif
