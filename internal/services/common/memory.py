"""A service process's memory: the large requests' given back to the system, and the cyclic
garbage collector's work kept small.

Large blocks.
With glibc's defaults a freed 10 MB upload mostly stays in the process: malloc serves a large
block by mmap only above a threshold that it raises, up to 32 MB, each time such a block is
freed, so after the first upload every later one comes from the heap and its arenas, which
fragment and are not returned (100 concurrent 10 MB uploads left user_svc at 1.5 GB). Fixing
the threshold (mallopt M_MMAP_THRESHOLD, which also stops the raising) makes every block of
MMAP_THRESHOLD_BYTES or more an mmap of its own, unmapped when freed; what small blocks leave
free at the top of the heap goes back past M_TRIM_THRESHOLD. tests/bench/memory.py (100
concurrent 10 MB uploads, body budget on, uvicorn): user_svc ends 35 MB above its baseline
without this, 14 MB with it. Elsewhere than glibc this does nothing.

The collector. With CPython's defaults a young collection runs every 700 container
allocations, several times per request, and every tenth of those walks the middle
generation too; the full ones walk every object the process ever kept, its modules and
classes included. Under the welcome workflow's load the collector took 5% of the machine's
CPU (perf). `collect_less_often`, once a process has started: what startup made is frozen
(gc.freeze, never walked again) and young collections run every YOUNG_THRESHOLD
allocations. Almost everything a request allocates is freed by reference counting before
then; the collector is still there for cycles, which now live a little longer."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 256 * 1024
TRIM_THRESHOLD_BYTES = 1024 * 1024

YOUNG_THRESHOLD = 20_000  # container allocations between two young collections (default 700)


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


def collect_less_often() -> None:
    """Freezes what the process has made so far and spaces the young collections out. Call
    once startup is done (imports, app, connections), before serving."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
