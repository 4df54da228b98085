"""``run.json``: what a test run keeps so its page can be rebuilt without the model or the data.

``defectkit test`` writes, into its output folder, ``per_image.csv`` (one row per test
image: path, defect type, label, score), ``metrics.json``, the overlay PNGs under
``overlays/`` and ``run.json``. ``run.json`` holds what cannot be recomputed from the
CSV: the metrics per defect type, the pixel curves (thinned, engine/curves.py), the
threshold the page starts at and where it came from, which overlays show which image,
and the run's parameters, data, versions and machine. ``defectkit report RUN_DIR``
reads these files back (``read_run``). The format is documented in docs/reports.md;
``version`` grows when a reader of an older version could misread a newer file.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np

from ..deploy.thresholds import Thresholds
from ..utils.atomic import atomic_write_text

PathLike = Union[str, Path]

RUN_FILE = "run.json"
PER_IMAGE_FILE = "per_image.csv"
RUN_FORMAT = "defectkit-run"
RUN_VERSION = 1

#: fit_info entries too long for a parameter table (kept in run.json, summarised on the page)
LONG_FIT_INFO = ("curve", "val_image_names", "seen_anomalies")


def plain(value: Any) -> Any:
    """JSON-safe copy: numpy numbers to Python, NaN/inf to None, paths to text, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def deployed_threshold(thresholds: Any, metrics: Mapping[str, float]) -> Dict[str, Any]:
    """The image threshold a page starts at, and where it came from.

    ``thresholds``: the model's ``thresholds_`` (a ``Thresholds``, its dict, or None).
    With one, ``origin`` is "model" and the rule it was chosen by is kept. Without, the
    page starts at the image F1-max threshold, ``origin`` "test_f1_max": chosen on the
    test set, so it describes the result and is for display only.
    """
    if isinstance(thresholds, Mapping):
        thresholds = Thresholds.from_dict(thresholds)
    if thresholds is not None and thresholds.image is not None and math.isfinite(float(thresholds.image)):
        return {
            "image": float(thresholds.image),
            "origin": "model",
            "rule": thresholds.rule,
            "fpr": thresholds.fpr,
            "source": thresholds.source,
            "n_normal_scores": len(thresholds.normal_scores or []),
        }
    return {
        "image": float(metrics["image_f1_threshold"]),
        "origin": "test_f1_max",
        "rule": "f1 on the test set",
        "fpr": None,
        "source": "",
        "n_normal_scores": 0,
    }


def run_params(model, result, extra: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The run's parameters grouped as the page shows them: model, training, data, timing,
    versions, machine."""
    from .environment import environment_info

    model_part: Dict[str, Any] = {"method": model.method}
    model_part.update(model.get_params())
    model_part.pop("cache_dir", None)
    model_part["resolution"] = (
        "native (tiled)" if getattr(model, "tiling_", None) is not None else model.preprocess.output_size
    )
    info = dict(getattr(model, "fit_info_", {}) or {})
    fit = {k: v for k, v in info.items() if k not in LONG_FIT_INFO}
    for k in LONG_FIT_INFO:
        if isinstance(info.get(k), list):
            fit[f"{k} (entries)"] = len(info[k])
    types = Counter(s.defect_type for s in result.samples)
    data: Dict[str, Any] = dict(extra or {})
    data["test_images"] = result.n_images
    data["test_images_per_type"] = dict(types)
    env = environment_info(model.device_)
    return {
        "model": model_part,
        "training": fit,
        "data": data,
        "timing": {
            "infer_ms_per_image": result.infer_ms_per_image,
            "batch_size": result.batch_size,
            "device": str(model.device_),
            **result.timing,
        },
        "versions": {k: env[k] for k in ("defectkit_version", "torch_version", "numpy_version", "python_version")},
        "machine": env["machine"],
        "fit_info": info,
    }


def build_record(
    title: str,
    metrics: Mapping[str, float],
    per_type: Mapping[str, Any],
    threshold: Mapping[str, Any],
    pixel_curves: Optional[Mapping[str, Any]],
    overlays: Mapping[str, Any],
    params: Mapping[str, Any],
    n_images: int,
) -> Dict[str, Any]:
    """The ``run.json`` payload (JSON-safe)."""
    return plain(
        {
            "format": RUN_FORMAT,
            "version": RUN_VERSION,
            "title": title,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "per_image": PER_IMAGE_FILE,
            "n_images": int(n_images),
            "metrics": dict(metrics),
            "per_defect_type": dict(per_type),
            "threshold": dict(threshold),
            "pixel_curves": dict(pixel_curves) if pixel_curves else None,
            "overlays": dict(overlays),
            "params": dict(params),
        }
    )


def write_record(run_dir: PathLike, record: Mapping[str, Any]) -> Path:
    """Write ``run_dir/run.json`` atomically."""
    text = json.dumps(record, indent=1, allow_nan=False) + "\n"
    return atomic_write_text(Path(run_dir) / RUN_FILE, text)


@dataclass
class SavedRun:
    """A test run read back from its folder: ``record`` (run.json) and ``rows`` (per_image.csv)."""

    run_dir: Path
    record: Dict[str, Any]
    rows: List[Dict[str, Any]]

    @property
    def labels(self) -> np.ndarray:
        return np.array([r["label"] for r in self.rows], dtype=np.int64)

    @property
    def scores(self) -> np.ndarray:
        return np.array([r["score"] for r in self.rows], dtype=np.float64)

    @property
    def defect_types(self) -> List[str]:
        return [r["defect_type"] for r in self.rows]


def _read_rows(path: Path) -> List[Dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: a test run folder holds the per-image scores written by `defectkit test`"
        )
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"path", "defect_type", "label", "score"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        rows = []
        for line, r in enumerate(reader, start=2):
            try:
                label, score = int(r["label"]), float(r["score"])
            except ValueError:
                raise ValueError(
                    f"{path}, line {line}: label {r['label']!r} / score {r['score']!r} are not numbers"
                ) from None
            if label not in (0, 1) or not math.isfinite(score):
                raise ValueError(
                    f"{path}, line {line}: label must be 0 or 1 and the score finite, "
                    f"got {r['label']!r} and {r['score']!r}"
                )
            rows.append({"path": r["path"], "defect_type": r["defect_type"], "label": label, "score": score})
    return rows


def read_run(run_dir: PathLike) -> SavedRun:
    """Read ``run.json`` and ``per_image.csv`` of a test run folder; errors name the file and the problem."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise NotADirectoryError(f"{run_dir} is not a folder (expected the output folder of `defectkit test`)")
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: it is written by `defectkit test` (defectkit 0.2 or newer); "
            "run `defectkit test` again to make it"
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
        raise ValueError(f'{path} is not a defectkit run record (no "format": "{RUN_FORMAT}")')
    version = record.get("version")
    if not isinstance(version, int) or version > RUN_VERSION:
        raise ValueError(
            f"{path} has run-record version {version!r}; this defectkit reads up to version "
            f"{RUN_VERSION}: upgrade defectkit"
        )
    for key in ("metrics", "threshold", "params", "overlays"):
        if not isinstance(record.get(key), dict):
            raise ValueError(f"{path}: entry {key!r} is missing or not an object")
    rows = _read_rows(run_dir / str(record.get("per_image") or PER_IMAGE_FILE))
    if record.get("n_images") not in (None, len(rows)):
        raise ValueError(
            f"{run_dir / PER_IMAGE_FILE} has {len(rows)} rows but {path} records {record['n_images']} test images"
        )
    return SavedRun(run_dir, record, rows)
