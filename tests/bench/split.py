"""Where a workflow's CPU goes, process by process: the whole system as tests/bench/welcome.py
runs it, each process's user and system CPU (with that of its children, such as convert) read
from /proc around a load, divided by the workflows it carried; or, idle, per second.

    python -m tests.bench.split welcome [--users 3000] [--concurrency 32 | --rate 15]
    python -m tests.bench.split conversion [--conversions 40] [--concurrency 10]
    python -m tests.bench.split idle [--seconds 20]

Each line also counts the process's wake-ups (voluntary context switches of its threads) per
workflow: thread hand-offs and waits, a count that hardly moves with the machine's speed or
load, so a change that saves some shows even where CPU figures are lost in the noise.
The figures of `just bench` sum these; this shows which process to profile
(tests/bench/profiles.py) and, run against an older revision from a git worktree
(PYTHONPATH=<worktree>:<worktree>/gen), what a change moved.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

from internal.supervisor import System
from tests.bench.conversion import conversion_load
from tests.bench.welcome import Cpu, cpu_of, descendants, load
from tests.e2e.system import whole_system

# process name -> its pids, their CPU and wake-ups so far
Snapshot = dict[str, tuple[list[int], Cpu, int]]


def snapshot(system: System) -> Snapshot:
    processes = {
        name: [child.process.pid, *descendants(child.process.pid)]
        for name, child in system.children.items()
        if child.process is not None
    }
    return {name: (pids, cpu_of(pids), wakeups_of(pids)) for name, pids in processes.items()}


def wakeups_of(pids: list[int]) -> int:
    """How often the processes' threads went to sleep and were woken since they started (their
    voluntary context switches): each thread hand-off, each wait for a socket, a lock or the
    GIL. Unlike CPU time, it hardly moves with the machine's speed."""
    count = 0
    for pid in pids:
        for status in Path(f"/proc/{pid}/task").glob("*/status"):
            with contextlib.suppress(FileNotFoundError):
                for line in status.read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches:"):
                        count += int(line.split()[1])
    return count


def spent_since(before: Snapshot) -> dict[str, tuple[Cpu, int]]:
    return {
        name: (cpu_of(pids) - cpu, wakeups_of(pids) - wakeups)
        for name, (pids, cpu, wakeups) in before.items()
    }


def report(spent: dict[str, tuple[Cpu, int]], count: float, unit: str) -> None:
    total, total_wakeups = 0.0, 0
    for name, (cpu, wakeups) in spent.items():
        user, system, children = (1000 * s / count for s in (cpu.user, cpu.system, cpu.children))
        total += user + system + children
        total_wakeups += wakeups
        extra = f"  children {children:7.2f}" if children else ""
        print(
            f"{name:12s} user {user:7.2f}  sys {system:6.2f}{extra}  ms  "
            f"wake-ups {wakeups / count:6.1f}  {unit}"
        )
    print(f"{'total':12s} {total:7.2f} ms  wake-ups {total_wakeups / count:6.1f}  {unit}")


def welcome(system: System, args: argparse.Namespace) -> None:
    load(system, "--users", "300", "--concurrency", "32")  # warm up
    shape = ["--rate", f"{args.rate:g}"] if args.rate else ["--concurrency", str(args.concurrency)]
    before = snapshot(system)
    figures = load(system, "--users", str(args.users), *shape)
    print(f"welcome: {figures['emails']}")
    report(spent_since(before), float(figures["emails"]["completed"]), "per workflow")


def conversion(system: System, args: argparse.Namespace) -> None:
    before: list[Snapshot] = []
    rate = conversion_load(
        system, args.conversions, args.concurrency, lambda: before.append(snapshot(system))
    )
    print(f"conversions: {rate:.2f}/s at concurrency {args.concurrency}")
    report(spent_since(before[0]), float(args.conversions), "per conversion")


def idle(system: System, args: argparse.Namespace) -> None:
    load(system, "--users", "50", "--concurrency", "8")  # every path taken once
    time.sleep(3)

    before = snapshot(system)
    time.sleep(args.seconds)
    report(spent_since(before), args.seconds, "per second")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["welcome", "conversion", "idle"])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=0, help="default: 32, conversions 10")
    parser.add_argument("--rate", type=float, default=0.0, help="welcome: an open loop instead")
    parser.add_argument("--conversions", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2, help="job worker processes")
    parser.add_argument("--worker-threads", type=int, default=8, help="threads per worker")
    args = parser.parse_args()
    args.concurrency = args.concurrency or (10 if args.what == "conversion" else 32)
    what = {"welcome": welcome, "conversion": conversion, "idle": idle}[args.what]
    with (
        tempfile.TemporaryDirectory(prefix="bench-split-") as tmp,
        whole_system(Path(tmp), workers=args.workers, worker_threads=args.worker_threads) as system,
    ):
        what(system, args)


if __name__ == "__main__":
    main()
