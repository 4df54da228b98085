"""Atomic file writes: a crash or Ctrl-C never leaves half a model, cache entry or results file.

Data goes to a temporary file in the target folder, is flushed, given the usual
umask-based permissions (``mkstemp`` would leave 0600) and renamed over the target
with ``os.replace``, which is atomic on POSIX and Windows.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Union

import torch

PathLike = Union[str, Path]


def file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: object, path: PathLike) -> Path:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())
