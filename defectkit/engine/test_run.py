"""A test run: evaluate a model on a labelled set, then write what a person reads.

Shared by ``defectkit test``, ``defectkit demo`` and benchmarks with run pages: one
``evaluate_model`` call, then ``write_test_run`` writes the run's folder --
``per_image.csv``, ``metrics.json``, overlays of the worst false alarms, the worst
escapes and a few examples (``overlays/``), ``run.json`` (engine/run_record.py) -- and
builds the page from those files (engine/report.py), exactly as ``defectkit report``
rebuilds it later.
When the model carries thresholds, the test set's good/defect confusion at the model's own
image threshold is reported too (``decision.json``): the test set only reads that decision,
it never sets it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..data.seen_anomalies import seen_file_names
from ..utils.atomic import atomic_write_text
from ..utils.outputs import OutputDir
from ..viz.overlay import display_images, save_overlay, select_examples
from .breakdown import per_defect_type
from .curves import pixel_curves
from .evaluate import EvaluationResult, evaluate_model, write_per_image_csv
from .report import write_run_report
from .run_record import build_record, deployed_threshold, run_params, write_record
from .worst_cases import worst_cases

#: Overlays per gallery (worst false alarms, worst escapes) by default.
GALLERY_SIZE = 6


@dataclass
class TestRun:
    """What a test run produced: the evaluation and the files written."""

    result: EvaluationResult
    report: Path
    per_image_csv: Path
    metrics_json: Path
    run_json: Optional[Path] = None
    decision: Optional[Dict[str, Any]] = None


def decision_at_threshold(labels: Sequence[int], scores: Sequence[float], thresholds) -> Dict[str, Any]:
    """Good/defect confusion of ``score >= thresholds.image`` against the true labels (1 = defect)."""
    y = np.asarray(labels).astype(bool)
    flagged = np.asarray(scores, dtype=np.float64) >= thresholds.image
    counts = {
        "good_as_good": int(np.sum(~y & ~flagged)),
        "good_as_defect": int(np.sum(~y & flagged)),
        "defect_as_good": int(np.sum(y & ~flagged)),
        "defect_as_defect": int(np.sum(y & flagged)),
    }
    n_good, n_defect = int(np.sum(~y)), int(np.sum(y))
    return {
        "threshold": thresholds.image,
        "rule": thresholds.rule,
        "how": thresholds.describe(),
        "confusion": counts,
        "good_flagged_fraction": counts["good_as_defect"] / n_good if n_good else None,
        "defect_found_fraction": counts["defect_as_defect"] / n_defect if n_defect else None,
        "held_out_normals_flagged_fraction": thresholds.flagged_normals(),
    }


def decision_lines(decision: Dict[str, Any]) -> List[str]:
    """The confusion at the model's threshold as a few printable lines."""
    c = decision["confusion"]
    lines = [
        f"at the model's threshold {decision['threshold']:.4g} ({decision['rule']}; chosen without test data):",
        f"  good images:      {c['good_as_good']} passed, {c['good_as_defect']} flagged",
        f"  defective images: {c['defect_as_defect']} flagged, {c['defect_as_good']} passed",
    ]
    if decision.get("held_out_normals_flagged_fraction") is not None:
        lines.append(f"  held-out normals flagged when it was set: {decision['held_out_normals_flagged_fraction']:.1%}")
    return lines


def unseen_test_set(model, dataset) -> Tuple[List, List[str]]:
    """The test set without the images the model trained on (``fit_info_["seen_anomalies"]``).

    -> (kept samples, notes to show the user). Scoring a model on defects it was trained
    on would inflate every metric (docs/protocol.md#seen-anomalies).
    """
    test = list(dataset.test)
    seen = getattr(model, "fit_info_", {}).get("seen_anomalies") or []
    if not seen:
        return test, []
    wanted = set(seen)
    kept = [s for s in test if seen_file_names([s])[0] not in wanted]
    excluded = len(test) - len(kept)
    notes = [
        f"excluding {excluded} test images the model saw in training (fit_info seen_anomalies); "
        f"metrics are on the reduced test set of {len(kept)} images"
    ]
    if excluded < len(wanted):
        notes.append(
            f"note: {len(wanted) - excluded} of the model's {len(wanted)} seen anomalies are not in this test set"
        )
    return kept, notes


def _mask_list(result: EvaluationResult) -> Optional[List[Optional[np.ndarray]]]:
    """Ground truth per image, None for a defective image without a mask (as evaluate_model scored it)."""
    if result.masks is None:
        return None
    return [None if (s.label == 1 and s.mask_path is None) else result.masks[i] for i, s in enumerate(result.samples)]


def _write_overlays(
    result: EvaluationResult, model, folder: Path, picks: Dict[str, List[int]]
) -> Dict[str, List[Dict[str, Any]]]:
    """Image | map overlays (ground truth outlined) of the picked images, one colour scale for all.

    Images come from the model's own inputs (padded with ``resize="keep"``, full resolution
    when tiled), so they lie on the maps' grid."""

    for kind in picks:  # a replaced run (--force) must not leave overlays of the old one behind
        for stale in folder.glob(f"{kind}_[0-9][0-9]_*.png"):
            stale.unlink()
    wanted = sorted({i for idx in picks.values() for i in idx})
    if not wanted:
        return {k: [] for k in picks}
    samples = [result.samples[i] for i in wanted]
    if hasattr(model, "load_inputs"):
        loaded, _, _ = model.load_inputs(samples, on_error="raise")
    else:  # anything with a ``preprocess`` (e.g. a model record without a backbone)
        from ..data.batches import load_images

        loaded = load_images(samples, model.preprocess, on_error="raise")[0]
    image_of = dict(zip(wanted, display_images(loaded)))
    vmin, vmax = float(np.min(result.maps)), float(np.max(result.maps))
    out: Dict[str, List[Dict[str, Any]]] = {}
    for kind, idx in picks.items():
        items = []
        for k, i in enumerate(idx):
            s = result.samples[i]
            img = image_of[i]
            h, w = img.shape[:2]  # maps of several sizes share one padded grid
            mask = result.masks[i][:h, :w] if result.masks is not None else None
            name = f"{kind}_{k:02d}_{s.defect_type}_{s.path.stem}.png"
            save_overlay(folder / name, img, result.maps[i][:h, :w], vmin, vmax, mask=mask, with_original=True)
            items.append(
                {
                    "index": int(i),
                    "path": str(s.path),
                    "defect_type": s.defect_type,
                    "label": int(s.label),
                    "score": float(result.scores[i]),
                    "overlay": f"{folder.name}/{name}",
                }
            )
        out[kind] = items
    return out


def write_test_run(
    model,
    result: EvaluationResult,
    out: Path,
    title: str,
    n_examples: int = 6,
    extra: Optional[Dict[str, Any]] = None,
    gallery_size: int = GALLERY_SIZE,
    output: Optional[OutputDir] = None,
) -> TestRun:
    """Write the run's folder ``out`` from an evaluation, then its page (report.html, report.md).

    ``output`` (a prepared :class:`~defectkit.utils.outputs.OutputDir` for ``out``) lists
    every file written, so a later ``--force`` run removes exactly these."""
    out = Path(out) if output is None else output.path
    out.mkdir(parents=True, exist_ok=True)
    before = {f for f in out.rglob("*") if f.is_file()}
    csv_path = write_per_image_csv(result, out / "per_image.csv")
    payload = dict(result.metrics)
    if result.group_metrics:
        payload["groups"] = result.group_metrics
    metrics_path = atomic_write_text(out / "metrics.json", json.dumps(payload, indent=1) + "\n")
    threshold = deployed_threshold(getattr(model, "thresholds_", None), result.metrics)
    labels = np.array([s.label for s in result.samples])
    types = [s.defect_type for s in result.samples]
    masks = _mask_list(result)
    per_type = per_defect_type(labels, result.scores, types, masks, result.maps if masks is not None else None)
    curves = None
    if masks is not None:
        keep = [i for i, m in enumerate(masks) if m is not None]
        curves = pixel_curves(result.masks[keep], result.maps[keep])
    worst = worst_cases(labels, result.scores, threshold["image"], gallery_size)
    picks = {
        "false_alarm": worst["false_alarms"]["indices"],
        "escape": worst["escapes"]["indices"],
        "example": select_examples(result, n_examples) if n_examples > 0 else [],
    }
    drawn = _write_overlays(result, model, out / "overlays", picks)
    overlays = {
        "vmin": float(np.min(result.maps)),
        "vmax": float(np.max(result.maps)),
        "false_alarms": {
            "n": worst["false_alarms"]["n"],
            "nearest": worst["false_alarms"]["nearest"],
            "items": drawn["false_alarm"],
        },
        "escapes": {"n": worst["escapes"]["n"], "nearest": worst["escapes"]["nearest"], "items": drawn["escape"]},
        "examples": {"n": len(drawn["example"]), "nearest": False, "items": drawn["example"]},
    }
    record = build_record(
        title, result.metrics, per_type, threshold, curves, overlays, run_params(model, result, extra), result.n_images
    )
    run_json = write_record(out, record)
    report = write_run_report(out)
    decision = None
    thresholds = getattr(model, "thresholds_", None)
    if thresholds is not None:
        decision = decision_at_threshold([s.label for s in result.samples], result.scores, thresholds)
        atomic_write_text(out / "decision.json", json.dumps(decision, indent=1) + "\n")
    if output is not None:
        for f in sorted({f for f in out.rglob("*") if f.is_file()} - before):
            output.record(f)
    return TestRun(result, report, csv_path, metrics_path, run_json, decision)


def run_test(
    model,
    test_samples: Sequence,
    out: Path,
    title: str,
    n_examples: int = 6,
    extra: Dict[str, Any] = None,
    progress: bool = True,
    strict: bool = False,
    groups: Dict[str, Any] = None,
    output: Optional[OutputDir] = None,
) -> TestRun:
    """Evaluate, then write the run's folder and page into ``out`` (``write_test_run``).

    ``strict``: a mask whose size differs from its image's is an error, not a warning.
    ``groups``: named groups of defect types to score apart (a dataset's ``defect_groups``)."""
    result = evaluate_model(model, test_samples, progress=progress, strict=strict, groups=groups)
    return write_test_run(model, result, Path(out), title, n_examples, extra, output=output)
