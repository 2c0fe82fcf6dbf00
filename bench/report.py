"""What the benchmarks print about the machine they ran on, and the breaks between parts.

Figures from a 2-core machine shared with other work move a lot; every benchmark says
how loaded the machine was so a reader can judge its numbers.
"""

from __future__ import annotations

import os
import platform

__all__ = ["closing", "machine", "section"]


def _loads(loads: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in loads)


def machine() -> str:
    """Cores and the load average right now, on one line."""
    return f"{os.cpu_count()} cores, load average (1/5/15 min) {_loads(os.getloadavg())}"


def closing(load_before: tuple[float, float, float], elapsed: float, libraries: str) -> None:
    """The closing lines: cores, Python and ``libraries``, the load at start and end, run time."""
    load_after = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, python {platform.python_version()}, {libraries}")
    print(f"load average (1/5/15 min) at start {_loads(load_before)}, at end {_loads(load_after)}")
    print(f"run time: {elapsed:.0f} s")


def section() -> None:
    """A break between the parts of a benchmark's output."""
    print()
    print()
