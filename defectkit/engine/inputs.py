"""Which files a ``predict`` run reads, and what it leaves out and why.

Files named on the command line are read as given. A folder contributes the regular
files directly inside it (with ``recursive``, below it), sorted by path so every run
sees them in the same order. Nothing is dropped silently: hidden entries, sub-folders
(without ``recursive``), broken links and special files are listed with a reason, and
files that are not images are left to the decoder, which names why it cannot read them.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

#: reasons that mean "a file is there but cannot be read" (counted as unreadable, not as skipped)
UNREADABLE_REASONS = ("broken link", "not a regular file")


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text)


@dataclass
class Inputs:
    """Files to score (with the stem their outputs are named by) and entries left out, with reasons."""

    files: List[Path] = field(default_factory=list)
    names: List[str] = field(default_factory=list)
    left_out: List[Tuple[str, str]] = field(default_factory=list)

    @property
    def skipped(self) -> List[Tuple[str, str]]:
        """Entries left out on purpose (hidden, folders, the output folder)."""
        return [(n, r) for n, r in self.left_out if r not in UNREADABLE_REASONS]

    @property
    def unreadable(self) -> List[Tuple[str, str]]:
        """Entries that are there but are no readable file (broken links, sockets, ...)."""
        return [(n, r) for n, r in self.left_out if r in UNREADABLE_REASONS]


def left_out_line(left_out: Sequence[Tuple[str, str]], limit: int = 50) -> str:
    """``"skipped 3: a.png (broken link), sub/ (folder; use --recursive), .x (hidden)"``."""
    shown = [f"{name} ({reason})" for name, reason in left_out[:limit]]
    more = f", and {len(left_out) - limit} more (all listed in predictions.jsonl)" if len(left_out) > limit else ""
    return f"skipped {len(left_out)}: {', '.join(shown)}{more}"


def _classify(entry: os.DirEntry, recursive: bool) -> Optional[str]:
    """Why a folder entry is not read as a file (None: it is a file to read)."""
    if entry.name.startswith("."):
        return "hidden folder" if entry.is_dir(follow_symlinks=False) else "hidden file"
    if entry.is_symlink():
        try:
            target = os.stat(entry.path)
        except OSError:
            return "broken link"
        if stat.S_ISDIR(target.st_mode):
            return "link to a folder; not followed" if recursive else "link to a folder; use --recursive"
        if not stat.S_ISREG(target.st_mode):
            return "not a regular file"
        return None
    if entry.is_dir(follow_symlinks=False):
        return None if recursive else "folder; use --recursive"
    if not entry.is_file(follow_symlinks=False):
        return "not a regular file"
    return None


def _walk(
    folder: Path,
    display: str,
    recursive: bool,
    out: Optional[Path],
    files: List[Tuple[Path, str]],
    left_out: List[Tuple[str, str]],
) -> None:
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        shown = f"{display}/{entry.name}" if display else entry.name
        path = folder / entry.name
        if out is not None and entry.is_dir(follow_symlinks=False) and path.resolve() == out:
            left_out.append((shown + "/", "the --out folder"))
            continue
        reason = _classify(entry, recursive)
        is_dir = entry.is_dir(follow_symlinks=False)
        if reason is not None:
            left_out.append((shown + ("/" if is_dir or "folder" in reason else ""), reason))
        elif is_dir:
            _walk(path, shown, recursive, out, files, left_out)
        else:
            files.append((path, shown))


def _unique_stems(relative: Sequence[str]) -> List[str]:
    """Output stems from relative paths (``sub/x.png`` -> ``sub_x``), -2, -3 ... on clashes."""
    seen: Dict[str, int] = {}
    names = []
    for rel in relative:
        stem = slug(str(Path(rel).with_suffix(""))) or "image"
        n = seen.get(stem.lower(), 0) + 1  # case-insensitive file systems
        seen[stem.lower()] = n
        names.append(stem if n == 1 else f"{stem}-{n}")
    return names


def expand_inputs(inputs: Sequence[str], recursive: bool = False, out: Optional[Path] = None) -> Inputs:
    """Files and folders as the user names them -> :class:`Inputs`.

    ``out`` (the run's output folder) is never read as input; naming it as an input
    folder is an error, since the run's own outputs would be scored by the next run.
    """
    out_resolved = Path(out).resolve() if out is not None else None
    listed: List[Tuple[Path, str]] = []
    left_out: List[Tuple[str, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            if out_resolved is not None and p.resolve() == out_resolved:
                raise ValueError(f"--out {out} is also an input folder; write the results somewhere else")
            _walk(p, str(p).rstrip("/") if str(p) not in (".", "") else "", recursive, out_resolved, listed, left_out)
        elif p.is_file():
            listed.append((p, p.name))
        elif p.is_symlink():
            raise FileNotFoundError(f"input '{p}' is a broken link (its target does not exist)")
        elif p.exists():
            raise ValueError(f"input '{p}' is not a regular file or folder")
        else:
            raise FileNotFoundError(f"input not found: '{p}'")
    if not listed and not left_out:
        raise FileNotFoundError(f"no files found in {', '.join(repr(str(i)) for i in inputs)}")
    # stems from the name below the input folder, so outputs do not repeat the folder path
    roots = [str(Path(i)).rstrip("/") for i in inputs if Path(i).is_dir()]
    rel = []
    for _path, shown in listed:
        r = shown
        for root in roots:
            if root not in ("", ".") and shown.startswith(root + "/"):
                r = shown[len(root) + 1 :]
                break
        rel.append(r)
    return Inputs([p for p, _ in listed], _unique_stems(rel), left_out)
