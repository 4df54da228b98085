"""Progress bars on a terminal, plain lines in a log: the one place defectkit makes progress output.

A tqdm bar redraws itself with carriage returns. On a terminal that is what a bar is; in a
log file or a pipe the returns pile up into one unreadable line. So :func:`progress` gives
a tqdm bar only when stderr is a terminal (or in a Jupyter kernel) and otherwise a
:class:`LineProgress`, which prints one plain line at most every ``LOG_INTERVAL`` seconds
(and a last line when the work took that long). ``DEFECTKIT_PROGRESS=bar|lines|off``
overrides the choice.

Messages printed while a bar may be on screen go through :func:`write`, which clears the
bar first, and :func:`close_all` ends every open bar (the CLI calls it before printing an
error), so a message never lands on a bar's line. Use bars as context managers so an
exception closes them too.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Iterator, Optional, TextIO

from tqdm import tqdm as _std_tqdm

MODES = ("bar", "lines", "off")
#: Seconds between two lines of a LineProgress.
LOG_INTERVAL = 30.0


def progress_mode(stream: Optional[TextIO] = None) -> str:
    """ "bar", "lines" or "off": ``$DEFECTKIT_PROGRESS`` if set, else "bar" on a terminal (or
    in a Jupyter kernel, where tqdm draws a widget) and "lines" anywhere else."""
    env = os.environ.get("DEFECTKIT_PROGRESS", "").strip().lower()
    if env:
        if env not in MODES:
            raise ValueError(f"DEFECTKIT_PROGRESS must be one of {', '.join(MODES)}, got {env!r}")
        return env
    stream = stream if stream is not None else sys.stderr
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):
        tty = False
    if tty:
        return "bar"
    return "bar" if "ipykernel" in sys.modules else "lines"


class LineProgress:
    """The subset of tqdm's interface defectkit uses, printing plain lines for logs.

    ``update``, ``set_postfix``, ``set_postfix_str``, ``close``, iteration and ``with``. A
    line reads ``features: 120/209 img, 31 s [loss=0.1]``; nothing is printed for work
    shorter than ``interval`` seconds.
    """

    def __init__(
        self,
        iterable: Optional[Iterable] = None,
        total: Optional[int] = None,
        desc: str = "",
        unit: str = "it",
        interval: float = LOG_INTERVAL,
        file: Optional[TextIO] = None,
    ):
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.interval = float(interval)
        self.file = file
        self.n = 0
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.lines = 0
        self.closed = False

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("this progress object has no iterable")
        for item in self.iterable:
            yield item
            self.update(1)

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _line(self, final: bool = False) -> str:
        count = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        elapsed = time.monotonic() - self.start
        text = f"{self.desc}: {count} {self.unit}" + (f" in {elapsed:.0f} s" if final else f", {elapsed:.0f} s")
        return text + (f" [{self.postfix}]" if self.postfix else "")

    def _emit(self, final: bool = False) -> None:
        print(self._line(final), file=self.file if self.file is not None else sys.stderr, flush=True)
        self.lines += 1
        self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.interval:
            self._emit()

    def set_postfix(self, ordered_dict: Optional[dict] = None, refresh: bool = True, **kwargs: Any) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.lines or time.monotonic() - self.start >= self.interval:
            self._emit(final=True)


def progress(
    iterable: Optional[Iterable] = None,
    *,
    total: Optional[int] = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    leave: bool = False,
    mininterval: float = 0.1,
):
    """A progress bar for ``iterable`` (or ``total`` steps): tqdm on a terminal, lines elsewhere.

    ``enabled=False`` (or ``DEFECTKIT_PROGRESS=off``) gives a silent pass-through. Use it as
    a context manager, so an exception closes the bar before the error is printed.
    """
    mode = progress_mode() if enabled else "off"
    if mode == "lines":
        return LineProgress(iterable, total=total, desc=desc, unit=unit)
    if mode == "bar":
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, mininterval=mininterval)
    return _std_tqdm(iterable, total=total, desc=desc, unit=unit, disable=True)


def write(message: str, file: Optional[TextIO] = None) -> None:
    """Print ``message`` (to stderr by default) without breaking a bar that is on screen."""
    _std_tqdm.write(message, file=file if file is not None else sys.stderr)


def close_all() -> None:
    """Close every open tqdm bar (each clears its line), e.g. before printing an error."""
    for bar in list(getattr(_std_tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - a bar that cannot close must not hide the error
            pass
