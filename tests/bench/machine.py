"""The machine a benchmark ran on, in one line printed above `just bench`'s table: the CPU's
model, the cores this process may use, Python's version, and how fast this machine runs plain
Python (the best of 5 timings of `sum(range(10**6))`, the figure `python3 -m timeit` gives).

The absolute goals (P1's workflows per second and CPU per workflow, P4's jobs per second) hold
or fail with the machine: the same code measured 7.5 ms of CPU per welcome where this
reference took 12 ms and 16.6 ms where it took 33 ms. Tables from different machines compare
only beside this line."""

from __future__ import annotations

import os
import platform
import timeit
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def reference_ms() -> float:
    """Milliseconds for one `sum(range(10**6))`, the best of 5 runs of 10."""
    runs = timeit.repeat("sum(range(1000000))", repeat=5, number=10)
    return min(runs) / 10 * 1000


def describe() -> str:
    cores = len(os.sched_getaffinity(0))
    return (
        f"# machine: {cpu_model()}, {cores} cores, Python {platform.python_version()};"
        f" sum(range(10**6)) takes {reference_ms():.1f} ms (best of 5)"
    )


if __name__ == "__main__":
    print(describe())
