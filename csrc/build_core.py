"""cffi build script for shmengine._core (run by setuptools at install time).

It never imports the package: the C sources and header are the whole input."""
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

ffi = FFI()
ffi.cdef("""
#define SHME_OK ...
#define SHME_TIMEOUT ...
#define SHME_ERROR ...
int shme_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns);
int shme_futex_wake(uint32_t *addr, int n);
int64_t shme_monotonic_ns(void);
int shme_set_parent_death_signal(int sig);
int shme_set_timer_slack(int64_t ns);
""")
ffi.set_source(
    "shmengine._core",
    '#include "shmengine_core.h"',
    sources=[os.path.relpath(os.path.join(HERE, "shmengine_core.c"))],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=["-O2", "-std=gnu11"],
)

if __name__ == "__main__":
    ffi.compile(verbose=True)
