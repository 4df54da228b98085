"""Atomic file writes: a crash or Ctrl-C never leaves half a model, cache entry or results file.

Data goes to a temporary file in the target folder, is flushed, given the usual
umask-based permissions (``mkstemp`` would leave 0600) and renamed over the target
with ``os.replace``, which is atomic on POSIX and Windows. When any step fails (read-only
folder, full disk, the target is a folder) the temporary file is removed and the error
names the target, never the temporary file.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Union

from .output import OutputError, write_error_reason

PathLike = Union[str, Path]


def file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; OutputError naming ``path`` when that fails."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(path, "it is a folder, not a file")
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(path, write_error_reason(exc), exc.errno) from exc
        raise
    return path


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: object, path: PathLike) -> Path:
    import torch  # here, so the torch-free runtime can use the other writers

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())
