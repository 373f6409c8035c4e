/* ring.c -- creation of the ring header (algorithm: ring.h). */
#include "ring.h"

size_t il_ring_bytes(uint64_t size) { return sizeof(il_ring_t) + (size_t)size; }

void il_ring_init(il_ring_t *r, uint64_t size, uint64_t capacity, uint64_t maxsize,
                  uint32_t features)
{
    /* The segment is fresh (zero-filled by ftruncate) and not yet visible to
     * anyone: the segment layer publishes it whole (see _segment.py). */
    memset(r, 0, sizeof *r);
    r->magic = IL_RING_MAGIC;
    r->version = IL_RING_VERSION;
    r->size = size;
    r->capacity = capacity;
    r->maxsize = maxsize;
    r->features = features;
    il_mutex_init(&r->plock);
    il_mutex_init(&r->clock);
}
