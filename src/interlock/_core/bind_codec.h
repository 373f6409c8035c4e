/*
 * bind_codec.h -- the message codec of the Ring binding: a Python object to
 * a ring record and back (record layout: ring.h).  bytes and bytearray go
 * raw; anything else is pickled (protocol 5), its out-of-band buffers (numpy
 * arrays) copied straight into the record.
 */
#ifndef INTERLOCK_BIND_CODEC_H
#define INTERLOCK_BIND_CODEC_H

#include "binding.h"
#include "ring.h"

/* A queue's spill configuration, per handle (Ring._set_spill; spill.md):
 * items whose record would exceed `threshold` bytes go to a file of their
 * own, named `prefix` + "<pid>.<token>".  threshold 0: never (the ring
 * alone; an item larger than the capacity raises ValueError). */
#define IL_SPILL_PREFIX_MAX 200
#define IL_SPILL_PATH_MAX (IL_SPILL_PREFIX_MAX + 40)
typedef struct {
    uint64_t threshold;
    char prefix[IL_SPILL_PREFIX_MAX];
} il_spill_cfg_t;

/* A pooled spill file claimed for one item (bind_spillpool.c). */
struct il_pool;
typedef struct {
    struct il_pool *pool;
    int slot;
    int fd;          /* >= 0: a new file, still unnamed (il_spill_link names it) */
    char *addr;      /* the producer's mapping of the file */
    uint64_t size;   /* the file's length, trailer included */
    uint32_t pid;    /* its name */
    uint64_t token;
    int first_reuse; /* the producer's mapping has no page mapped yet */
} il_pool_claim_t;

/* Under the GIL: a pooled file for `content` bytes, its trailer set BUSY.
 * 1 (c filled), 0 (none: use a fresh file), -1 with errno. */
int il_pool_claim(const il_spill_cfg_t *cfg, uint64_t content, il_pool_claim_t *c);
/* Under the GIL: forget the pool's idle files (a new file found no room).
 * How many went. */
int il_pool_shrink(const il_spill_cfg_t *cfg);
/* Under the GIL, once the item is copied into the claimed file. */
void il_pool_copied(il_pool_claim_t *c);
/* The put of a claimed file failed before its record was published. */
void il_pool_abort(il_pool_claim_t *c);
int il_pool_register(PyObject *m);

/* One message, ready to be copied into the ring. */
#define MSG_INLINE_VIEWS 4
typedef struct {
    /* Cleared by il_msg_prepare (only these: the per-item memset is on the
     * hot path). */
    il_rec_t rec;
    int spill_fd;            /* -1: none, or already named (set by il_msg_prepare) */
    uint64_t need;           /* aligned record size, header included */
    PyObject *owner;         /* keeps the source alive: bytes, or pickle output */
    const char *data;        /* main part: raw bytes or pickle stream */
    Py_ssize_t dlen;
    int nviews;              /* out-of-band buffers (and a bytearray's view) */
    int has_ba_view;         /* views[0] is a bytearray's own buffer */
    Py_buffer *views;
    uint64_t *lens;
    PyObject *buflist;
    int pooled;              /* the item went into a pooled file (pool_claim) */
    int published;           /* il_spill_link ran: the record is being published */
    /* Not cleared: each is written before it is read. */
    /* Spilled (rec.kind == IL_REC_SPILL): the payload went to an unnamed
     * file (spill_fd); `ref` is the record's payload; il_spill_link names
     * the file, under plock, right before the record is published. */
    il_spill_ref_t ref;
    il_pool_claim_t pool_claim; /* pooled: the file it went into */
    Py_buffer inline_views[MSG_INLINE_VIEWS];
    uint64_t inline_lens[MSG_INLINE_VIEWS];
    char spill_path[IL_SPILL_PATH_MAX];
} msg_t;

/* A record copied out under clock, turned into a Python object after. */
typedef struct {
    uint8_t kind;
    uint16_t nbufs;
    PyObject *data;   /* bytes / bytearray / pickle stream (bytes) */
    PyObject **bufs;  /* nbufs bytearrays (PICKLE with out-of-band buffers) */
    /* not cleared by il_raw_read: written when kind is IL_REC_SPILL */
    il_spill_ref_t ref; /* kind IL_REC_SPILL: the file to map (il_raw_finish) */
} raw_t;

/* Make m ready for the ring (pickling if needed; no ring lock held).  With
 * a spill threshold (cfg, may be NULL) an item above it is written to an
 * unnamed spill file here.  Returns 0, or -1 with an exception (too big for
 * the ring and no spilling: ValueError; no room for the spill file:
 * OSError). */
int il_msg_prepare(il_ring_t *r, const il_spill_cfg_t *cfg, PyObject *obj, msg_t *m);
/* Under plock, right before m's record is written and published: give a
 * spilled message's file its name.  0, or -1 with errno (nothing named). */
int il_spill_link(il_ring_t *r, msg_t *m);
/* Under plock: copy m at pos; returns the position after it. */
uint32_t il_msg_write(il_ring_t *r, uint32_t pos, msg_t *m);
void il_msg_release(msg_t *m);
/* Under clock: copy the record at pos out (allocating only non-GC objects);
 * its size, or 0 with an exception (damage). */
uint64_t il_raw_read(il_ring_t *r, uint32_t pos, uint32_t avail, raw_t *x);
/* The same from a linear buffer holding avail published bytes from the
 * record's start (an overflow block's records, read with pread). */
uint64_t il_raw_read_linear(const unsigned char *buf, uint32_t avail, uint64_t capacity,
                            raw_t *x);
/* pwrite / pread all n bytes at off: 0, or an errno (EIO: end of file). */
int il_write_all(int fd, const void *src, uint64_t n, uint64_t off);
int il_read_all(int fd, void *dst, uint64_t n, uint64_t off);
/* m's whole record (m->need bytes, padding zeroed) into out. */
void il_msg_serialize(msg_t *m, unsigned char *out);
/* Without any lock: the Python object of a record read by il_raw_read (a
 * spilled one: its file mapped, then unlinked; cfg names it). */
PyObject *il_raw_finish(raw_t *x, const il_spill_cfg_t *cfg);
void il_raw_clear(raw_t *x);
/* A consumed record that will never be finished (get_many out of memory):
 * clear it, and unlink a spilled one's file. */
void il_raw_discard(raw_t *x, const il_spill_cfg_t *cfg);
/* Module init: pickle's functions and the keyword names. */
int il_codec_init(void);

#endif
