"""`just bench [--quick] [--only P1,P3]`: every goal of the performance issue measured in one
run on this machine, printed as one table (tests/bench/table.py). Each part is a module of
this package with `measure(quick: bool) -> list[Row]`; --quick shrinks every part to a few
seconds, which proves the benchmark still runs (CI) but measures nothing worth keeping.
Exits 1 when a goal is not met (not with --quick). The machine's line (tests/bench/machine.py)
comes first and again above the final table."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from tests.bench.machine import describe
from tests.bench.table import Row, render

# goal -> module under tests/bench, in the order they run.
PARTS: dict[str, str] = {
    "P3": "rpc",
    "P4": "broker",
    "P2": "conversion",
    "P5": "memory",
    "P1": "welcome",
    "C1": "console_pages",  # the operator's console (issue 12)
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds per part (CI)")
    parser.add_argument("--only", default="", help="comma-separated goals, e.g. P1,P3")
    args = parser.parse_args()
    wanted = [g.strip() for g in args.only.split(",") if g.strip()] or list(PARTS)
    machine = describe()
    print(machine, flush=True)
    rows: list[Row] = []
    for goal in wanted:
        started = time.monotonic()
        module = importlib.import_module(f"tests.bench.{PARTS[goal]}")
        part_rows: list[Row] = module.measure(args.quick)
        rows.extend(part_rows)
        elapsed = time.monotonic() - started
        print(f"# {goal} ({PARTS[goal]}) measured in {elapsed:.0f} s", flush=True)
        print(render(part_rows), flush=True)
    print()
    print(machine)
    print(render(rows))
    if args.quick:
        return 0
    return 0 if all(row.met for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
