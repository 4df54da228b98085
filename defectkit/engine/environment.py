"""What a result was measured on: versions, machine, peak memory.

Recorded beside every benchmark row and report, so any number can be traced to the
code and the machine that produced it (docs/protocol.md#reporting).
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any, Dict

import numpy as np

from .. import __version__
from ..utils.cpu import cpu_description


def peak_rss_mb() -> float:
    """Peak resident memory of this *process* so far, in MiB (``ru_maxrss``).

    It never decreases, so in a run of several models it is the peak over everything
    run so far in the process, not the memory of the last model alone. NaN where the
    ``resource`` module does not exist (Windows).
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return float("nan")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def environment_info(device: Any = None) -> Dict[str, Any]:
    """Versions and machine, recorded next to every result so numbers can be traced."""
    import torch

    gpu = ""
    try:
        if torch.cuda.is_available() and (device is None or str(device).startswith("cuda")):
            gpu = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - a broken driver must not stop a report
        gpu = ""
    cpus = os.cpu_count() or 0
    machine = f"{platform.platform()}; {platform.machine()}; {cpus} CPUs" + (f"; GPU {gpu}" if gpu else "")
    return {
        "defectkit_version": __version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "machine": machine,
        "cpu_count": cpus,
        "cpu": cpu_description(),
        "gpu": gpu,
    }
