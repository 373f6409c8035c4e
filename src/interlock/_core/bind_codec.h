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

/* One message, ready to be copied into the ring. */
#define MSG_INLINE_VIEWS 4
typedef struct {
    il_rec_t rec;
    uint64_t need;           /* aligned record size, header included */
    PyObject *owner;         /* keeps the source alive: bytes, or pickle output */
    const char *data;        /* main part: raw bytes or pickle stream */
    Py_ssize_t dlen;
    int nviews;              /* out-of-band buffers (and a bytearray's view) */
    int has_ba_view;         /* views[0] is a bytearray's own buffer */
    Py_buffer *views;
    Py_buffer inline_views[MSG_INLINE_VIEWS];
    uint64_t *lens;
    uint64_t inline_lens[MSG_INLINE_VIEWS];
    PyObject *buflist;
} msg_t;

/* A record copied out under clock, turned into a Python object after. */
typedef struct {
    uint8_t kind;
    uint16_t nbufs;
    PyObject *data;   /* bytes / bytearray / pickle stream (bytes) */
    PyObject **bufs;  /* nbufs bytearrays (PICKLE with out-of-band buffers) */
} raw_t;

/* Make m ready for the ring (pickling if needed; no ring lock held).
 * Returns 0, or -1 with an exception (too big for the ring: ValueError). */
int il_msg_prepare(il_ring_t *r, PyObject *obj, msg_t *m);
/* Under plock: copy m at pos; returns the position after it. */
uint32_t il_msg_write(il_ring_t *r, uint32_t pos, msg_t *m);
void il_msg_release(msg_t *m);
/* Under clock: copy the record at pos out (allocating only non-GC objects);
 * its size, or 0 with an exception (damage). */
uint64_t il_raw_read(il_ring_t *r, uint32_t pos, uint32_t avail, raw_t *x);
/* Without any lock: the Python object of a record read by il_raw_read. */
PyObject *il_raw_finish(raw_t *x);
void il_raw_clear(raw_t *x);
/* Module init: pickle's functions and the keyword names. */
int il_codec_init(void);

#endif
