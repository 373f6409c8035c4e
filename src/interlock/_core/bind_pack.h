/*
 * bind_pack.h -- "packed" items: plain built-in values encoded without
 * pickle (docs/design/queue.md, "Packed items").
 *
 * Most items that go through a queue are small tuples, lists and dicts of
 * ints, floats, strings and bytes.  pickle.dumps + pickle.loads of
 * (0, 'abc', 1.5) cost about 1.3 us here, most of a put/get's 2.1 us: a
 * Pickler and an Unpickler are built and torn down per call.  A value made
 * only of the exact built-in types below is instead written as a tagged
 * tree, in C, and rebuilt in C: the receiver gets an object of the same
 * types and the same value as pickle would have given it.
 *
 * Packed: None, True, False; int in the signed 64-bit range; float; str;
 * bytes; tuple, list and dict of packed values, nested at most
 * IL_PACK_MAX_DEPTH deep.  Exact types only: a subclass (a bool is not an
 * int here, an IntEnum, a namedtuple, an OrderedDict) is pickled, as is an
 * int beyond 64 bits.
 *
 * Identity: pickle keeps the sharing of objects inside one item ([x, x]
 * unpickles to a list whose two elements are one object).  A packed item
 * keeps it for every mutable object: an item in which one list or dict
 * appears twice (or contains itself) is pickled instead, and so is an item
 * with more than IL_PACK_MAX_MUTABLE lists and dicts (those met are kept in
 * a set of pointers on the stack).  Immutable values that appear twice come back as two equal
 * objects, which no program can tell apart except with `is`.
 *
 * Layout (little-endian, no alignment; every length counted):
 *   'N' 'T' 'F'                      None, True, False
 *   'i' i32      'q' i64             int
 *   'd' f64                          float (its 8 bytes: NaN payloads, -0.0)
 *   's' u8 k, u32 n, n*k bytes       str of n code points of k bytes (1, 2, 4:
 *                                    CPython's own storage, kept as is)
 *   'b' u32 n, n bytes               bytes
 *   't' / 'l' u32 n, n values        tuple / list
 *   'm' u32 n, n (key, value) pairs  dict, in insertion order
 * The record holds exactly one value, nothing after it.
 *
 * The receiver checks every tag, length and depth against the record's
 * length before it reads: damaged bytes raise RuntimeError ("corrupt"),
 * never read past the record.
 */
#ifndef INTERLOCK_BIND_PACK_H
#define INTERLOCK_BIND_PACK_H

#include <Python.h>

#define IL_PACK_MAX_DEPTH 16
#define IL_PACK_MAX_MUTABLE 128 /* a power of two */
/* Items that pack to more than this are pickled (a large item's cost is its
 * bytes, which pickle copies as fast; and only pickle spills). */
#define IL_PACK_MAX_BYTES 65536

/* Under the GIL; runs no Python code.  The packed size of obj (> 0), or 0
 * when it is not packable within `limit` bytes (never an exception). */
Py_ssize_t il_pack_size(PyObject *obj, Py_ssize_t limit);
/* Write obj's packed form (il_pack_size bytes, just computed, with the GIL
 * held since) into out. */
void il_pack_write(PyObject *obj, char *out);
/* The value back, or NULL with RuntimeError (damaged) or MemoryError. */
PyObject *il_unpack(const char *data, Py_ssize_t len);

#endif
