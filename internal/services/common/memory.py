"""Making a service process give the memory of large requests back to the system.

With glibc's defaults a freed 10 MB upload mostly stays in the process: malloc serves a large
block by mmap only above a threshold that it raises, up to 32 MB, each time such a block is
freed, so after the first upload every later one comes from the heap and its arenas, which
fragment and are not returned (100 concurrent 10 MB uploads left user_svc at 1.5 GB). Fixing
the threshold (mallopt M_MMAP_THRESHOLD, which also stops the raising) makes every block of
MMAP_THRESHOLD_BYTES or more an mmap of its own, unmapped when freed; what small blocks leave
free at the top of the heap goes back past M_TRIM_THRESHOLD. tests/bench/memory.py (100
concurrent 10 MB uploads, body budget on, uvicorn): user_svc ends 35 MB above its baseline
without this, 14 MB with it. Elsewhere than glibc this does nothing."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 256 * 1024
TRIM_THRESHOLD_BYTES = 1024 * 1024


def return_large_blocks() -> bool:
    """Sets glibc's thresholds for this process; whether it could (False elsewhere)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    done = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)) and done
    if not done:
        log.warning("could not set malloc's thresholds: large requests may stay in memory")
    return done
