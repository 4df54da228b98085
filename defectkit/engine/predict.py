"""Scoring new, unlabelled images: files in, one decision per file out.

Talks to a model only through the :class:`~defectkit.deploy.scorer.Scorer` interface, so
the torch estimator and the exported runtime produce the same files by the same code;
nothing here imports torch.

For every input entry one record goes to ``predictions.jsonl`` and one row to
``predictions.csv``: the score, the label (``good`` / ``defect``; ``unreadable`` or
``skipped`` with the reason for entries that were not scored), the threshold, the
normalised score (0.5 = threshold) and the defect boxes. Each defective image also gets
a binary mask PNG, and each scored image an overlay with the defect regions outlined.
Boxes, masks and overlays are at the model's resolution (``map_size`` in each record).

Prediction streams: files are read, scored and written a chunk at a time, and nothing
per file is kept in memory afterwards. The overlay colour scale is therefore fixed in
advance from the thresholds (``Thresholds.colour_scale``: from the median normal pixel
to as far above the pixel threshold, which sits mid-scale), the same for every run of
that model; a model without a pixel threshold draws each overlay on its own min..max.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

import numpy as np
from PIL import Image

from ..deploy.decisions import decide, overlay_image
from ..deploy.thresholds import Thresholds, user_thresholds
from ..utils.outputs import OutputDir
from .inputs import UNREADABLE_REASONS, Inputs, expand_inputs, slug  # noqa: F401  (re-exported)

#: Files read per step (bounds memory on large folders).
PREDICT_CHUNK = 32
#: Columns of predictions.csv, in order.
CSV_COLUMNS = (
    "file",
    "score",
    "label",
    "threshold",
    "normalised_score",
    "n_boxes",
    "boxes",
    "mask",
    "overlay",
    "error",
)


def resolve_thresholds(
    stored: Optional[Thresholds], image: Optional[float] = None, pixel: Optional[float] = None
) -> Optional[Thresholds]:
    """The thresholds a run decides with: the model's, with ``image`` / ``pixel`` overriding them."""
    if image is None and pixel is None:
        return stored
    if stored is None:
        if image is None:
            raise ValueError(
                "--pixel-threshold alone is not enough: this model stores no image threshold; pass --threshold too"
            )
        return user_thresholds(image, pixel)
    return stored.with_values(image, pixel)


@dataclass
class PredictSummary:
    """Counts of one run (nothing per file is kept)."""

    out: Path
    thresholds: Optional[Thresholds]
    n_entries: int = 0
    n_good: int = 0
    n_defect: int = 0
    n_unlabelled: int = 0
    n_unreadable: int = 0
    n_skipped: int = 0
    colour_scale: str = ""
    files: Dict[str, str] = field(default_factory=dict)

    @property
    def n_scored(self) -> int:
        return self.n_good + self.n_defect + self.n_unlabelled

    def line(self) -> str:
        parts = [f"{self.n_good} good", f"{self.n_defect} defect"]
        if self.n_unlabelled:
            parts.append(f"{self.n_unlabelled} scored without a label")
        parts.append(f"{self.n_unreadable} unreadable")
        if self.n_skipped:
            parts.append(f"{self.n_skipped} skipped")
        return f"{self.n_entries} entries: " + ", ".join(parts)


class RecordWriters:
    """``<stem>.jsonl`` and ``<stem>.csv`` (predictions.*, or one partition of a Ray run), one record at a time."""

    def __init__(self, out: OutputDir, stem: str = "predictions"):
        self.jsonl_path = out.file(f"{stem}.jsonl")
        self.csv_path = out.file(f"{stem}.csv")
        self._jsonl = open(self.jsonl_path, "w", encoding="utf-8")
        self._csv_file = open(self.csv_path, "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(CSV_COLUMNS)

    def write(self, record: Dict[str, Any]) -> None:
        self._jsonl.write(json.dumps(record) + "\n")
        row = dict(record)
        row["boxes"] = json.dumps(record["boxes"]) if record.get("boxes") else ""
        row["n_boxes"] = len(record.get("boxes") or [])
        self._csv.writerow(
            ["" if row.get(k) is None else (repr(row[k]) if isinstance(row[k], float) else row[k]) for k in CSV_COLUMNS]
        )

    def flush(self) -> None:
        self._jsonl.flush()
        self._csv_file.flush()

    def close(self) -> None:
        self._jsonl.close()
        self._csv_file.close()


def not_scored_record(file: str, label: str, reason: str) -> Dict[str, Any]:
    return {
        "file": file,
        "score": None,
        "label": label,
        "threshold": None,
        "normalised_score": None,
        "boxes": [],
        "mask": None,
        "overlay": None,
        "error": reason,
    }


def predict_files(
    scorer,
    inputs: Inputs,
    out: OutputDir,
    thresholds: Optional[Thresholds] = None,
    overlays: bool = True,
    on_record: Optional[Callable[[Dict[str, Any]], None]] = None,
    progress: bool = True,
) -> PredictSummary:
    """Score ``inputs`` with ``scorer`` and write predictions, masks and overlays into ``out``.

    ``thresholds`` decide good/defect (None: scores only, labels left empty).
    ``on_record`` is called with each record as it is written. Raises ValueError when
    no input could be read, after writing the records that say why.
    """
    from ..utils.progress import progress as progress_bar

    summary = PredictSummary(out.path, thresholds)
    scale = thresholds.colour_scale() if thresholds is not None else None
    summary.colour_scale = colour_scale_text(scale)
    writers = RecordWriters(out)
    summary.files = {"jsonl": str(writers.jsonl_path), "csv": str(writers.csv_path)}

    def emit(record: Dict[str, Any]) -> None:
        writers.write(record)
        summary.n_entries += 1
        if on_record is not None:
            on_record(record)

    try:
        for name, reason in inputs.left_out:
            emit(left_out_record(name, reason, summary))
        bar = progress_bar(total=len(inputs.files), desc="predict", unit="file", enabled=progress)
        for start in range(0, len(inputs.files), PREDICT_CHUNK):
            chunk = inputs.files[start : start + PREDICT_CHUNK]
            names = inputs.names[start : start + PREDICT_CHUNK]
            for record in score_chunk(scorer, chunk, names, thresholds, overlays, scale, out, summary):
                emit(record)
            writers.flush()
            bar.update(len(chunk))
        bar.close()
    finally:
        writers.close()
    if summary.n_scored == 0:
        raise ValueError(
            f"none of the {len(inputs.files)} input files could be read as an image (reasons in {writers.jsonl_path})"
        )
    return summary


def left_out_record(name: str, reason: str, summary: PredictSummary) -> Dict[str, Any]:
    """The record of an input entry that was not read (a broken link, a folder, ...), counted in ``summary``."""
    counted = "unreadable" if reason in UNREADABLE_REASONS else "skipped"
    setattr(summary, f"n_{counted}", getattr(summary, f"n_{counted}") + 1)
    return not_scored_record(name, counted, reason)


def colour_scale_text(scale) -> str:
    """How overlays are coloured, in words (the same for every engine)."""
    return (
        "per image (min..max of its own map): the model has no pixel threshold"
        if scale is None
        else f"fixed [{scale[0]:.4g}, {scale[1]:.4g}] from the pixel threshold and normal pixels"
    )


def score_chunk(
    scorer,
    chunk: Sequence[Path],
    names: Sequence[str],
    thresholds: Optional[Thresholds],
    overlays: bool,
    scale,
    out,
    summary: PredictSummary,
) -> Iterator[Dict[str, Any]]:
    """Read, score and decide one chunk of files -> their records, in input order.

    The one code path behind every engine (local ``predict_files`` and the Ray actors), so
    records, masks and overlays are the same whoever runs them. ``out`` is anything with
    ``file(relative) -> Path`` (an OutputDir); ``summary`` counts the decisions.
    """
    size = int(scorer.output_size)
    batch, ok, errors = scorer.load_batch(list(chunk))
    ok_index = {Path(p): i for i, p in enumerate(ok)}
    reasons = {Path(p): r for p, r in errors}
    scores = maps = images = None
    if ok:
        scores, maps = scorer.score(batch)
        images = scorer.display_images(batch) if overlays else None
    normalised = None
    if ok and thresholds is not None:
        normalised = thresholds.normalised(scores)
    for path, stem in zip(chunk, names):
        path = Path(path)
        if path not in ok_index:
            summary.n_unreadable += 1
            yield not_scored_record(str(path), "unreadable", reasons.get(path, "could not be read"))
            continue
        i = ok_index[path]
        yield _record(
            path,
            stem,
            float(scores[i]),
            maps[i],
            None if images is None else images[i],
            thresholds,
            None if normalised is None else float(normalised[i]),
            scale,
            size,
            out,
            summary,
        )


def _record(
    path: Path,
    stem: str,
    score: float,
    amap: np.ndarray,
    image: Optional[np.ndarray],
    thresholds: Optional[Thresholds],
    normalised: Optional[float],
    scale,
    size: int,
    out: OutputDir,
    summary: PredictSummary,
) -> Dict[str, Any]:
    """Decide one scored image (``deploy.decisions.decide``), write its mask and overlay, and return its record."""
    decision = decide(score, amap, thresholds, normalised)
    record: Dict[str, Any] = {
        "file": str(path),
        "score": decision.score,
        "label": decision.label,
        "threshold": decision.threshold,
        "normalised_score": decision.normalised_score,
        "pixel_threshold": decision.pixel_threshold,
        "boxes": decision.boxes,
        "mask": None,
        "overlay": None,
        "map_size": size,
        "error": None,
    }
    if decision.label is None:
        summary.n_unlabelled += 1
    elif decision.label == "defect":
        summary.n_defect += 1
    else:
        summary.n_good += 1
    if decision.mask is not None:
        target = out.file(f"masks/{stem}.png")
        Image.fromarray(decision.mask.astype(np.uint8) * 255).save(target)
        record["mask"] = f"masks/{stem}.png"
    if image is not None:
        target = out.file(f"overlays/{stem}.png")
        overlay_image(image, amap, decision.mask, scale).save(target)
        record["overlay"] = f"overlays/{stem}.png"
    return record
