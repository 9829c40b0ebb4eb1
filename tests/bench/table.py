"""The one table `just bench` prints: for every goal of the performance issue, the figure we
measured, the peer it is compared with (grpcio, bare ImageMagick, a baseline), their ratio and
whether the goal is met. Each part of the benchmark (tests/bench/<part>.py) returns its rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One measured figure. `peer`/`peer_value` name what it is compared with (empty for an
    absolute goal); `ratio` is value / peer_value, oriented as the goal text states it; `met`
    says whether the goal holds."""

    goal: str  # "P1".."P5"
    figure: str  # what was measured, e.g. "welcome workflows/s (closed loop, c=10)"
    value: float
    unit: str
    target: str  # the goal as a sentence fragment, e.g. ">= 200/s" or ">= 1.0x grpcio"
    met: bool
    peer: str = ""
    peer_value: float | None = None
    ratio: float | None = None


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render(rows: Sequence[Row]) -> str:
    """A Markdown table (it reads well in a terminal and pastes into the README)."""
    lines = [
        "| goal | figure | measured | peer | peer measured | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
        peer_value = f"{_number(row.peer_value)} {row.unit}" if row.peer_value is not None else ""
        lines.append(
            f"| {row.goal} | {row.figure} | {_number(row.value)} {row.unit} | {row.peer} "
            f"| {peer_value} | {ratio} | {row.target} | {'yes' if row.met else 'NO'} |"
        )
    return "\n".join(lines)
