"""Output folders that never lose a user's files and never mix two runs.

A command that writes a folder of results (``predict``, ``test``) refuses a folder that
already holds something unless it is given ``--force``. Each run lists every file it
writes in ``.defectkit-files`` inside the folder, one path per line, as it writes it
(so an interrupted run is listed too). With ``--force``, the next run first removes
exactly the files that list names, and the folders that leaves empty; anything else in
the folder (the user's own files, or results of a defectkit older than this list) is
left alone and reported. The list is read and written line by line, so its size never
matters. Opening the list is also the check that the folder can be written, made before
any expensive work.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import IO, Optional, Set, Tuple, Union

MANIFEST = ".defectkit-files"
_HEADER = "# files written by defectkit into this folder; `--force` on the next run removes exactly these\n"

PathLike = Union[str, Path]


def _safe_relative(line: str) -> Optional[PurePosixPath]:
    """A manifest line as a path inside the folder, or None for comments, blanks and anything
    that would point outside it (absolute, ``..``)."""
    text = line.rstrip("\n")
    if not text or text.startswith("#"):
        return None
    rel = PurePosixPath(text)
    if rel.is_absolute() or any(part in ("..", "") for part in rel.parts) or rel.name == MANIFEST:
        return None
    return rel


def remove_previous_run(folder: Path) -> int:
    """Delete the files the last run listed in ``folder/.defectkit-files`` (and folders left empty)."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return 0
    removed = 0
    dirs: Set[PurePosixPath] = set()
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            rel = _safe_relative(line)
            if rel is None:
                continue
            p = folder.joinpath(*rel.parts)
            if p.is_symlink() or p.is_file():
                p.unlink()
                removed += 1
            dirs.update(parent for parent in rel.parents if parent != PurePosixPath("."))
    for rel in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        d = folder.joinpath(*rel.parts)
        try:
            d.rmdir()  # only when empty: a user's file inside keeps the folder
        except OSError:
            pass
    manifest.unlink()
    return removed


def _other_entries(folder: Path, limit: int = 3) -> Tuple[int, list]:
    """(number of entries in ``folder`` besides the manifest, the first ``limit`` names)."""
    count, names = 0, []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name == MANIFEST:
                continue
            count += 1
            if len(names) < limit:
                names.append(entry.name + ("/" if entry.is_dir(follow_symlinks=False) else ""))
    return count, names


class OutputDir:
    """A results folder prepared for one run; :meth:`file` names (and lists) each file written."""

    def __init__(self, path: Path, manifest: IO[str], removed: int = 0, kept: Tuple[int, list] = (0, [])):
        self.path = path
        self._manifest = manifest
        self.removed = removed
        self.kept = kept

    @staticmethod
    def check(path: PathLike, force: bool = False) -> None:
        """Raise unless ``path`` can take a run's results: a missing or empty folder, or any
        folder with ``force``; changes nothing (call it before expensive work)."""
        out = Path(path)
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"--out {out} exists and is not a folder")
        if out.is_dir():
            n_other, names = _other_entries(out)
            if n_other and not force:
                raise FileExistsError(
                    f"--out {out} is not empty ({n_other} entries, e.g. {', '.join(names)}); pass --force to "
                    "replace the files an earlier defectkit run wrote there (other files are kept), "
                    "or choose another --out"
                )
            if not os.access(out, os.W_OK | os.X_OK):
                raise PermissionError(f"cannot write results into --out {out}: permission denied")
        else:
            parent = next((p for p in out.absolute().parents if p.exists()), None)
            if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
                raise PermissionError(f"cannot create --out {out}: {parent} is not writable")

    @classmethod
    def prepare(cls, path: PathLike, force: bool = False) -> "OutputDir":
        """Check ``path`` and make it ready: refuse a non-empty folder without ``force``; with it,
        remove the previous run's files (listed in its manifest) and nothing else."""
        out = Path(path)
        cls.check(out, force)
        removed = remove_previous_run(out) if force and out.is_dir() else 0
        try:
            out.mkdir(parents=True, exist_ok=True)
            manifest = open(out / MANIFEST, "w", encoding="utf-8")
            manifest.write(_HEADER)
            manifest.flush()
        except OSError as exc:
            raise PermissionError(f"cannot write results into --out {out}: {exc.strerror or exc}") from None
        return cls(out, manifest, removed, _other_entries(out))

    def file(self, relative: str) -> Path:
        """``path / relative``, listed in the manifest first (parents created)."""
        rel = PurePosixPath(relative)
        if _safe_relative(str(rel)) is None:
            raise ValueError(f"not a file name inside the output folder: {relative!r}")
        target = self.path.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._manifest.write(str(rel) + "\n")
        self._manifest.flush()
        return target

    def record(self, written: PathLike) -> None:
        """List a file another function already wrote inside the folder."""
        rel = Path(written).resolve().relative_to(self.path.resolve())
        self._manifest.write(rel.as_posix() + "\n")
        self._manifest.flush()

    def close(self) -> None:
        self._manifest.close()

    def __enter__(self) -> "OutputDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def notes(self) -> list:
        """Lines for the user: what was removed, what was left."""
        lines = []
        if self.removed:
            lines.append(f"removed {self.removed} files of the previous run in {self.path}")
        n_other, names = self.kept
        if n_other:
            lines.append(
                f"note: {self.path} also holds {n_other} entries defectkit did not list as its own "
                f"(e.g. {', '.join(names)}); they were left as they are"
            )
        return lines
