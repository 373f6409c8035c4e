"""Build of the C11 core (interlock._core); everything else is in pyproject.toml."""
import os
import sys

from setuptools import Extension, setup

if not sys.platform.startswith("linux"):
    sys.exit("interlock needs Linux (futex, /proc, /dev/shm); this is %s" % sys.platform)

CORE = "src/interlock/_core"
extra = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
         "-Wno-missing-field-initializers", "-Wno-cast-function-type", "-fvisibility=hidden"]
link = []
if os.environ.get("INTERLOCK_TEST_BUILD") == "1":
    # crash points (_core/crashpoint.h): compiled in only for the tests
    extra += ["-DIL_CRASHPOINTS"]
if os.environ.get("INTERLOCK_SANITIZE"):
    # gcc's sanitizers: see docs/design/verification.md
    extra += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"]
    link += ["-fsanitize=address,undefined"]

setup(
    ext_modules=[
        Extension(
            "interlock._core",
            # algorithms (no Python.h), then the binding layer and one file per type
            sources=[f"{CORE}/{name}" for name in (
                "platform.c", "crashpoint.c", "mutex.c", "ring.c", "sync.c", "aio.c",
                "binding.c", "bind_pack.c", "bind_codec.c", "bind_spillpool.c", "bind_warmmap.c", "bind_loan.c", "bind_ring.c", "bind_mutex.c", "bind_sync.c",
                "bind_semaphore.c", "bind_rwlock.c", "bind_event.c", "bind_barrier.c",
                "bind_condition.c", "bind_mapping.c", "bind_aio.c", "bind_resp.c", "bind_module.c")],
            depends=[f"{CORE}/{name}" for name in (
                "platform.h", "crashpoint.h", "mutex.h", "ring.h", "eventcount.h", "sync.h",
                "aio.h", "layout.h", "binding.h", "bind_pack.h", "bind_codec.h", "bind_sync.h", "spillpool.h")],
            extra_compile_args=extra,
            extra_link_args=link,
        )
    ]
)
