"""Large buffers handed back to the system when freed, so that the decode budget bounds resident memory.

glibc raises its mmap threshold each time a large block is freed: after a few decoded images, buffers of tens of
MiB come from the heap arenas instead, and what they free stays resident in each thread's arena. Measured on the
hostile-upload test (ten requests at once, a 1 GiB decode budget): +1.9 GB resident above idle with the dynamic
threshold, +0.87 GB with it fixed at 1 MiB. Elsewhere (macOS, musl) nothing changes.
"""

from __future__ import annotations

import ctypes
import platform
import sys

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
LARGE_BUFFER_BYTES = 1 << 20


def release_large_buffers() -> bool:
    """Fix glibc's mmap threshold at `LARGE_BUFFER_BYTES`; whether it was set (False off glibc)."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(LARGE_BUFFER_BYTES)))
