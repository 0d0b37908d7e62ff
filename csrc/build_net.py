"""cffi build script for shmengine._net (run by setuptools at install time).

It never imports the package: the C sources and header are the whole input."""
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

ffi = FFI()
ffi.cdef("""
#define SHME_NET_BATCH ...
int shme_net_send(int fd, const uint8_t *buf, const uint32_t *lens, int n,
                  uint32_t addr, uint16_t port);
int shme_net_recv(int fd, uint8_t *buf, uint32_t slot_size, uint32_t *lens,
                  uint32_t *src_addr, uint16_t *src_port, int n, int timeout_ms);
""")
ffi.set_source(
    "shmengine._net",
    '#include "net.h"',
    sources=[os.path.relpath(os.path.join(HERE, "net.c"))],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall"],
)

if __name__ == "__main__":
    ffi.compile(verbose=True)
