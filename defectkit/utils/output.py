"""Can this output be written? Asked before the work, answered with the path the user gave.

A command that trains for an hour and only then finds its output folder read-only (or
names a hidden temporary file in its error) has wasted that hour. Every command therefore
checks its outputs first, with the two functions here:

* :func:`check_output_file` for one file (``train --out model.pt``, ``synth --out grid.png``):
  the path must not be a folder, must not exist unless ``force``, and its folder (or the
  nearest folder that exists, when the rest will be created) must accept a new file.
* :func:`check_output_dir` for a folder of results (``test``, ``benchmark``, ``demo``): the
  path must be a folder or creatable, and writable.

Writability is tested by creating (and removing) a small file, not with ``os.access``: a
read-only mount, an ACL, a full disk or root on a 0555 folder answer ``os.access`` and
``open`` differently, and only ``open`` is what the command will do later. The probe writes
a few kilobytes, so a disk with no space left fails here too. A full disk can still fill
up during the work; then the atomic writer (utils/atomic.py) fails naming the target and
leaves no partial file.
"""

from __future__ import annotations

import errno as _errno
import os
import tempfile
from pathlib import Path
from typing import Optional, Union

PathLike = Union[str, "os.PathLike[str]"]

#: Bytes the probe writes: enough that a disk with no free block refuses it.
PROBE_BYTES = 4096


class OutputError(OSError):
    """An output cannot be written. The message names the path as the user gave it."""

    def __init__(self, path: PathLike, problem: str, errno: Optional[int] = None):
        self.path = Path(path)
        self.problem = problem
        self.message = f"cannot write '{path}': {problem}"
        super().__init__(errno if errno is not None else _errno.EIO, self.message)
        self.filename = str(path)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (type(self), (self.path, self.problem, self.errno))


def write_error_reason(exc: OSError) -> str:
    """A short reason for a failed write ("no space left on the device", "permission denied", ...)."""
    if exc.errno == _errno.ENOSPC:
        return "no space left on the device"
    if exc.errno == _errno.EROFS:
        return "the file system is read-only"
    if exc.errno in (_errno.EACCES, _errno.EPERM):
        return "permission denied"
    if exc.errno == _errno.EDQUOT:
        return "disk quota exceeded"
    return exc.strerror or str(exc)


def _existing_ancestor(path: Path) -> Path:
    """``path`` itself or its nearest ancestor that exists (the folder creation would start in)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def probe_writable(folder: Path) -> None:
    """Create, write, flush and remove a small hidden file in ``folder``; OSError if any step fails."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".defectkit-write-test-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * PROBE_BYTES)
            f.flush()
            os.fsync(f.fileno())
    finally:
        Path(tmp).unlink(missing_ok=True)


def _check_folder(given: PathLike, target: Path) -> None:
    """``target`` (or where it would be created) is a folder that accepts new files."""
    start = _existing_ancestor(target)
    if not start.is_dir():
        raise OutputError(given, f"'{start}' is a file, not a folder", _errno.ENOTDIR)
    try:
        probe_writable(start)
    except OSError as exc:
        where = "" if start == Path(os.path.abspath(target)) else f" (in '{start}', where it would be created)"
        raise OutputError(given, f"{write_error_reason(exc)}{where}", exc.errno) from None


def check_output_file(path: PathLike, force: bool = False, option: str = "--out") -> Path:
    """Refuse now what writing ``path`` would refuse later: a folder, an existing file
    without ``force``, or a folder that does not accept new files. Returns ``Path(path)``."""
    p = Path(path)
    if p.is_dir():
        raise OutputError(
            path, f"it is a folder; {option} names the file to write (e.g. '{p / 'model.pt'}')", _errno.EISDIR
        )
    if p.exists() and not force:
        raise FileExistsError(f"{path} already exists; pass --force to replace it")
    if p.exists() and not p.is_file():
        raise OutputError(path, "it exists and is not a regular file")
    _check_folder(path, p.parent)
    return p


def check_output_dir(path: PathLike) -> Path:
    """Refuse now an output folder that is a file or does not accept new files. Returns ``Path(path)``.

    Whether existing results in it may be replaced is the caller's question (``--force``).
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(path, "it is a file, not a folder", _errno.ENOTDIR)
    _check_folder(path, p)
    return p
