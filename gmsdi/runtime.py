"""How many CPU threads torch should use: all free cores, fewer when other processes are busy.

Torch's intra-op threads wait for each other at every operation, so a thread that shares its core
with another busy process stalls all of them: on a 2-core machine with another job holding the
CPU, two threads ran generation several times slower than one (benchmarks/results/speed.md).
`auto_threads` counts the cores that other processes keep busy right now and leaves them alone.
"""

from __future__ import annotations

import os
import statistics
import time

import torch


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def busy_cores(samples: int = 5, interval: float = 0.02) -> float:
    """Threads of other processes running right now, the median of `samples` reads `interval` s apart.

    Reads the run-queue count of /proc/loadavg (Linux), less the reading thread itself; elsewhere
    the 1-minute load average, which also counts this process's recent work.
    """
    if not os.path.exists("/proc/loadavg"):
        return float(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0.0
    counts = []
    for i in range(samples):
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
        counts.append(max(0, running - 1))
        if i + 1 < samples:
            time.sleep(interval)
    return float(statistics.median(counts))


def auto_threads() -> int:
    """The free cores: available cores less those other processes keep busy (at least 1)."""
    return max(1, available_cores() - round(busy_cores()))


def parse_threads(value: int | str | None) -> int | None:
    """`None`/"auto" → None (decide per run with `auto_threads`); else a positive int.

    Raises:
        ValueError: not "auto" and not a whole number ≥ 1.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"threads must be a whole number >= 1 or 'auto', got {value!r}") from None
    if n < 1 or (isinstance(value, float) and value != n):
        raise ValueError(f"threads must be a whole number >= 1 or 'auto', got {value!r}")
    return n


def set_threads(threads: int | str | None = None) -> int:
    """Sets torch's intra-op threads to `threads` (None/"auto": `auto_threads()`); returns the count."""
    n = parse_threads(threads)
    n = auto_threads() if n is None else n
    torch.set_num_threads(n)
    return n
