"""results.csv as a stream: one line per finished run, read back to resume or to summarise.

A grid of runs can take hours and can be stopped at any point (a killed driver, a lost
cluster). Each run's row is therefore appended to ``results.csv`` and flushed the moment
it finishes, whichever engine ran it and in whatever order the runs finish. The file is
then the one source of truth: ``--resume`` reads it to skip finished runs, and the final
summary is built from it, in the grid's order, so it does not depend on finish order.

A run is identified by its key (method, variant, category, seed); the settings that
define what it computed (backbone, sizes, parameters, data folder, ...) must match for a
recorded row to count as done, otherwise resuming is refused rather than mixing two
different benchmarks in one table.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ..utils.atomic import atomic_write_text
from .results import EXTRA_COLUMNS, LEADING_COLUMNS, _csv_value, _failed

PathLike = Union[str, Path]

#: What identifies one run of a grid.
KEY_COLUMNS = ("method", "variant", "category", "seed")
#: The settings that define what a run computed; a recorded row with other values is not the same run.
SETTING_COLUMNS = (
    "backbone",
    "weights",
    "image_size",
    "crop_size",
    "resize",
    "tile_size",
    "tile_overlap",
    "method_params",
    "batch_size",
    "feature_cache",
    "seen_anomalies",
    "seen_dir",
    "data_path",
)
#: Columns every streamed results.csv has after the usual ones: the weights file, the node that ran
#: the run (Ray node id, empty for the local engine) and the error of a failed run (empty when it succeeded).
STREAM_COLUMNS = ("weights", "node", "error")
#: Columns read back as text even when they look like numbers.
TEXT_COLUMNS = {
    "method",
    "backbone",
    "category",
    "variant",
    "resize",
    "layout",
    "seen_files",
    "seen_dir",
    "group_metrics",
    "device",
    "method_params",
    "data_path",
    "torch_version",
    "defectkit_version",
    "python_version",
    "machine",
    "timestamp",
    "weights",
    "node",
    "error",
    "run_page",
}
#: Columns that hold a float (NaN when empty), as ``run_one`` writes them.
FLOAT_COLUMNS = {
    "image_auroc",
    "pixel_auroc",
    "aupro",
    "pixel_ap",
    "train_seconds",
    "infer_ms_per_image",
    "peak_rss_mb",
    "image_f1_max",
    "image_f1_threshold",
    "pixel_f1_max",
    "pixel_f1_threshold",
    "throughput_img_s",
    "backbone_img_s",
    "decode_ms_per_image",
    "warmup_seconds",
}


def stream_columns(run_pages: bool = False) -> List[str]:
    """The header of a streamed results.csv (fixed before the first run, since lines are appended)."""
    return list(LEADING_COLUMNS) + list(EXTRA_COLUMNS) + (["run_page"] if run_pages else []) + list(STREAM_COLUMNS)


def run_key(row: Mapping[str, Any]) -> Tuple[str, str, str, int]:
    """(method, variant, category, seed) of a row or a planned run."""
    return (str(row["method"]), str(row.get("variant") or row["method"]), str(row["category"]), int(row["seed"]))


def _text(value: Any) -> str:
    v = _csv_value(value)
    return "" if v is None else str(v)


def setting_differences(recorded: Mapping[str, Any], expected: Mapping[str, Any]) -> List[str]:
    """``["image_size: 64 in results.csv, 128 now", ...]`` for the settings that differ."""
    return [
        f"{c}: {_text(recorded.get(c, ''))!r} in results.csv, {_text(expected.get(c, ''))!r} now"
        for c in SETTING_COLUMNS
        if _text(recorded.get(c, "")) != _text(expected.get(c, ""))
    ]


def _parse(column: str, text: Optional[str]) -> Any:
    """A results.csv cell back as the value ``run_one`` wrote (floats round-trip exactly: they are written by repr)."""
    if text is None:
        return ""
    if column in TEXT_COLUMNS:
        return text
    if column in FLOAT_COLUMNS:
        return float(text) if text != "" else float("nan")
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_rows(path: PathLike) -> List[Dict[str, Any]]:
    """The complete rows of a results.csv, values typed as ``run_one`` wrote them.

    A last line cut short (the process was killed while writing it) is dropped: that run
    is simply not done. A file that is not a results.csv is an error naming it."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, restval=None)
        header = reader.fieldnames or []
        missing = [c for c in KEY_COLUMNS if c not in header and c != "variant"]
        if missing:
            raise ValueError(f"{path}: not a defectkit results.csv (no column {missing[0]!r})")
        rows = []
        for line in reader:
            if any(v is None for v in line.values()) or None in line:
                continue  # cut short, or more cells than the header
            rows.append({c: _parse(c, v) for c, v in line.items()})
    return rows


def failed(row: Mapping[str, Any]) -> bool:
    """Whether a row records a run that raised instead of finishing."""
    return _failed(row)


class ResultsStream:
    """results.csv opened for appending: :meth:`append` writes one row and flushes it."""

    def __init__(self, path: PathLike, columns: Sequence[str], keep: Iterable[Mapping[str, Any]] = ()):
        """Start ``path`` with the header and the rows of ``keep`` (atomically), then append from there."""
        self.path = Path(path)
        self.columns = list(columns)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in keep:
            w.writerow(self._cells(r))
        atomic_write_text(self.path, buf.getvalue())
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")

    def _cells(self, row: Mapping[str, Any]) -> Dict[str, Any]:
        return {c: _csv_value(row.get(c, "")) for c in self.columns}

    def append(self, row: Mapping[str, Any]) -> None:
        buf = io.StringIO()  # one write per row, so a kill leaves at most one partial line
        csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n").writerow(
            self._cells(row)
        )
        self._file.write(buf.getvalue())
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ResultsStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def in_grid_order(rows: Sequence[Mapping[str, Any]], keys: Sequence[Tuple[str, str, str, int]]) -> List[Dict[str, Any]]:
    """Rows sorted by the grid's order of ``keys`` (rows of runs outside the grid last, as read)."""
    position = {k: i for i, k in enumerate(keys)}
    indexed = sorted(enumerate(rows), key=lambda ir: (position.get(run_key(ir[1]), len(position)), ir[0]))
    return [dict(r) for _, r in indexed]
