"""Where a workflow's time goes: the whole system as tests/bench/welcome.py runs it, py-spy
attached to every process during a load of welcome workflows (closed or open loop) or of
conversions (tests/bench/conversion.py's), and each process's busiest functions printed
(share of its busy samples spent in a function and what it calls, and in the function
itself).

    python -m tests.bench.profiles [--users 3000] [--concurrency 32 | --rate 150] [--gil]
    python -m tests.bench.profiles --conversions 80 [--concurrency 10] [--gil]

The raw profiles (collapsed stacks, one file per process) stay in --out, readable by
flamegraph tools. py-spy samples each process 100 times a second, or SPY_RATE times (it pauses
it briefly for each sample): figures measured with it attached are not the benchmark's."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.bench.conversion import conversion_load
from tests.bench.welcome import load
from tests.e2e.system import whole_system

FRAME_LINE = re.compile(r":\d+\)$")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=0, help="default: 32, conversions 10")
    parser.add_argument("--conversions", type=int, default=0, help="conversions, not welcomes")
    parser.add_argument("--rate", type=float, default=0.0, help="open loop at this rate instead")
    parser.add_argument("--out", type=Path, default=Path("var/profiles"))
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--gil", action="store_true", help="only samples holding the GIL: Python's CPU time"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).parent / "py-spy"
    with (
        tempfile.TemporaryDirectory(prefix="profile-welcome-") as tmp,
        whole_system(Path(tmp)) as system,
    ):
        if not args.conversions:
            load(system, "--users", "200", "--concurrency", "32")  # warm up
        recorders = {
            name: subprocess.Popen(
                [
                    str(spy),
                    "record",
                    "--pid",
                    str(child.process.pid),
                    "--format",
                    "raw",
                    "--rate",
                    os.environ.get("SPY_RATE", "100"),
                    "--output",
                    str(args.out / f"{name}.txt"),
                    "--nonblocking",
                    *(["--gil"] if args.gil else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, child in system.children.items()
            if child.process is not None
        }
        time.sleep(1)  # attached
        if args.conversions:
            rate = conversion_load(system, args.conversions, args.concurrency or 10)
            outcome = f"{args.conversions} conversions at {rate:.2f}/s"
        else:
            shape = ["--concurrency", str(args.concurrency or 32)]
            if args.rate:
                shape = ["--rate", f"{args.rate:g}"]
            outcome = str(load(system, "--users", str(args.users), *shape)["emails"])
        for recorder in recorders.values():
            recorder.send_signal(2)  # SIGINT: py-spy writes its output and exits
        for recorder in recorders.values():
            recorder.wait(60)
    print(f"load: {outcome}")
    for name in recorders:
        print(summarize(args.out / f"{name}.txt", name, args.top))


def summarize(path: Path, name: str, top: int) -> str:
    """A process's busiest functions from py-spy's collapsed stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines() if path.exists() else []:
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [FRAME_LINE.sub(")", frame) for frame in stack.split(";")]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    lines = [f"== {name}: {total} samples"]
    for frame, count in inclusive.most_common(top):
        lines.append(
            f"{100 * count / max(total, 1):5.1f}% {100 * own[frame] / max(total, 1):5.1f}%  {frame}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
