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
    uint32_t gen;    /* the slot's generation (a loan's check that it is still its file) */
} il_pool_claim_t;

/* A loan (Queue.loan, bind_loan.c): a pooled file handed to the user as a
 * writable buffer, to be put without a copy (spill.md, "Loans").  The C
 * part of the _core.Loan object. */
enum { IL_LOAN_OPEN = 0, IL_LOAN_PENDING = 1, IL_LOAN_SENT = 2 };
typedef struct il_loan {
    il_pool_claim_t claim; /* the file; claim.fd >= 0: new, unnamed until sent */
    uint64_t off;          /* the buffer's offset in the file (IL_LOAN_HEAD) */
    uint64_t nbytes;       /* the buffer's length */
    pid_t pid;             /* the process that took it (a fork child's copy is inert) */
    _Atomic int state;     /* IL_LOAN_*: set under the GIL, or by a put under plock */
    int owns_map;          /* the pool forgot the file: the mapping is the loan's to unmap */
    char path[IL_SPILL_PATH_MAX]; /* the file's name (a new file: once sent) */
    struct il_loan *prev, *next; /* this process's live loans (under the GIL) */
} il_loan_t;

/* Where a loan's buffer starts in its file: the pickle stream of the item
 * that carries it goes before (spill.md, "Loans"). */
#define IL_LOAN_HEAD 4096u

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
int il_warm_register(PyObject *m); /* bind_warmmap.c */
/* Under the GIL: a pooled file of `content` bytes for a loan, its pages
 * mapped in the producer; the slot is held for the loan until
 * il_pool_loan_end.  1, 0 (the pool has no room), -1 with errno. */
int il_pool_loan_claim(const il_spill_cfg_t *cfg, uint64_t content, il_loan_t *ln);
/* Under the GIL: the loan is still its slot's (the file may be put). */
int il_pool_loan_valid(const il_loan_t *ln);
const char *il_pool_prefix(const il_loan_t *ln); /* its pool's queue (a valid loan's) */
/* Under the GIL, when the loan object goes: an unsent file goes back to
 * the pool (or away); the mapping is unmapped if the pool forgot it. */
void il_pool_loan_end(il_loan_t *ln);

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
    PyObject *loan;          /* a loaned file carries the item (bind_loan.c): a reference */
    int published;           /* il_spill_link ran: the record is being published */
    int spill_later;         /* above the threshold, its file not written yet:
                                il_msg_prepare_batch left it to il_msg_spill */
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
/* The same, except that an item to be spilled is only pickled: its file is
 * written by il_msg_spill (put_many pickles a whole batch first, so that an
 * unpicklable item puts nothing, then writes each file right before its
 * chunk is published, so that the consumer starts on the first item while
 * the producer copies the next).  m->need is the item's whole size until
 * then. */
int il_msg_prepare_batch(il_ring_t *r, const il_spill_cfg_t *cfg, PyObject *obj, msg_t *m);
/* Write a message that il_msg_prepare_batch left unwritten (spill_later)
 * into its spill file; nothing to do for any other.  0, or -1 with an
 * exception (m stays releasable with il_msg_release). */
int il_msg_spill(il_ring_t *r, const il_spill_cfg_t *cfg, msg_t *m);
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
/* bind_loan.c: the open loan of this process, of the queue of `cfg`, whose
 * buffer holds [buf, buf + len); NULL if none. */
il_loan_t *il_loan_find(const il_spill_cfg_t *cfg, const void *buf, uint64_t len);
PyObject *il_loan_object(il_loan_t *ln); /* the _core.Loan owning ln (borrowed) */
il_loan_t *il_loan_of(PyObject *loan);   /* and back */
/* Ring.loan: a new loan of `nbytes` from the queue's pool, as a memoryview,
 * or a memoryview of a bytearray when the pool has no room. */
PyObject *il_loan_new(const il_spill_cfg_t *cfg, Py_ssize_t nbytes);
int il_loan_register(PyObject *m);

/* _core._nd_streams(): (numpy arrays sent with a kept pickle stream,
 * numpy arrays pickled by pickle.dumps) in this process (tests). */
PyObject *il_codec_nd_streams(PyObject *mod, PyObject *noargs);

/* Module init: pickle's functions and the keyword names. */
int il_codec_init(void);

#endif
