"""What CPU a timing was taken on: its model and widest vector instruction set.

Why: ONNX Runtime's blocked convolutions gain far more from AVX-512 than torch's do, so a
runtime/torch speed ratio measured on an AVX-512 machine does not carry over to an AVX2
one (measured: RealNet 2.8-3.1x there, 2.4x here on AVX2). Every speed record names both.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Iterable

#: vector extensions named in records, widest first
SIMD_LEVELS = ("avx512f", "avx2", "avx", "sse4_2", "neon", "asimd")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def widest_simd(flags: Iterable[str]) -> str:
    """The widest of :data:`SIMD_LEVELS` in ``flags`` ("" when none is)."""
    have = set(flags)
    return next((level for level in SIMD_LEVELS if level in have), "")


def cpu_description(cpuinfo: str = None) -> str:
    """E.g. "AMD EPYC (avx2)": the CPU model and its widest vector extension.

    Read from /proc/cpuinfo on Linux; elsewhere ``platform.processor()`` without the extension."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    name, flags = "", []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = value.split()
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    simd = widest_simd(flags)
    return f"{name} ({simd})" if simd else name
