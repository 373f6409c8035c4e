/* aio.h -- what aio.c (the asyncio helper's wait) needs from the binding
 * files, whose types are static there. */
#ifndef INTERLOCK_AIO_H
#define INTERLOCK_AIO_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

int il_py_is_ring(PyObject *o);  /* module.c */
int il_py_is_mutex(PyObject *o); /* module.c */
int il_py_is_event(PyObject *o); /* sync_module.c */

/* Adds _aio_wait, _aio_bell, _aio_ring, _aio_pass_on and AIO_* to the module. */
int il_aio_register(PyObject *module);

#endif
