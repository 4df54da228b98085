"""Device choice and seeding, shared by every method so runs are device-agnostic and repeatable."""

from __future__ import annotations

import contextlib
import random
from typing import Iterator, Union

import numpy as np
import torch


def resolve_device(device: Union[str, torch.device] = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a clear error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but no CUDA GPU is available; use --device cpu or auto")
    if device not in ("cpu",) and not device.startswith(("cuda", "mps")):
        raise ValueError(f"unknown device {device!r}: use auto, cpu or cuda[:N]")
    return torch.device(device)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a torch generator for code that wants its own."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def autocast_off() -> Iterator[None]:
    """Features are computed in float32 even if a caller enabled autocast (cached values stay exact)."""
    if torch.is_autocast_enabled():
        with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
            yield
    else:
        yield
