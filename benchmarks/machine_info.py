"""What the benchmark tables print about the machine they ran on (imported by the scripts beside it)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name(fallback: str = "unknown CPU") -> str:
    """The CPU model from /proc/cpuinfo (Linux), else the platform's processor string, else `fallback`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or fallback
