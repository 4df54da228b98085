"""A test run: evaluate a model on a labelled set, then write what a person reads.

Shared by ``defectkit test`` and ``defectkit demo``: metrics, a per-image CSV, overlays of
example images and the report, all from one ``evaluate_model`` call. When the model
carries thresholds, the test set's good/defect confusion at the model's own image
threshold is reported too (``decision.json``): the test set only reads that decision,
it never sets it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..data.seen_anomalies import seen_file_names
from ..utils.outputs import OutputDir
from ..viz.overlay import write_example_overlays
from ..viz.report import write_report
from .environment import environment_info
from .evaluate import EvaluationResult, evaluate_model, write_per_image_csv


@dataclass
class TestRun:
    """What a test run produced: the evaluation and the files written."""

    result: EvaluationResult
    report: Path
    per_image_csv: Path
    metrics_json: Path
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
    lines = [f"at the model's threshold {decision['threshold']:.4g} ({decision['rule']}; chosen without test data):",
             f"  good images:      {c['good_as_good']} passed, {c['good_as_defect']} flagged",
             f"  defective images: {c['defect_as_defect']} flagged, {c['defect_as_good']} passed"]
    if decision.get("held_out_normals_flagged_fraction") is not None:
        lines.append(f"  held-out normals flagged when it was set: {decision['held_out_normals_flagged_fraction']:.1%}")
    return lines


def model_params(model) -> Dict[str, Any]:
    """The model's parameters, fit summary, versions and machine, as the report shows them."""
    params: Dict[str, Any] = {"method": model.method}
    params.update(model.get_params())
    params.pop("cache_dir", None)
    params["resolution"] = model.preprocess.output_size
    params["fit_info"] = dict(getattr(model, "fit_info_", {}))
    env = environment_info(model.device_)
    params["versions"] = {k: env[k] for k in ("defectkit_version", "torch_version", "numpy_version", "python_version")}
    params["machine"] = env["machine"]
    return params


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
    notes = [f"excluding {excluded} test images the model saw in training (fit_info seen_anomalies); "
             f"metrics are on the reduced test set of {len(kept)} images"]
    if excluded < len(wanted):
        notes.append(f"note: {len(wanted) - excluded} of the model's {len(wanted)} seen anomalies are not in this test set")
    return kept, notes


def run_test(model, test_samples: Sequence, out: Path, title: str, n_examples: int = 6,
             extra: Dict[str, Any] = None, progress: bool = True, output: Optional[OutputDir] = None) -> TestRun:
    """Evaluate, then write per_image.csv, metrics.json, overlays and the report into ``out``.

    ``output`` (a prepared :class:`~defectkit.utils.outputs.OutputDir` for ``out``) lists
    every file written, so a later ``--force`` run removes exactly these.
    """
    out = Path(out) if output is None else output.path

    def target(name: str) -> Path:
        return output.file(name) if output is not None else out / name

    result = evaluate_model(model, test_samples, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = write_per_image_csv(result, target("per_image.csv"))
    metrics_path = target("metrics.json")
    metrics_path.write_text(json.dumps(result.metrics, indent=1) + "\n")
    decision = None
    thresholds = getattr(model, "thresholds_", None)
    if thresholds is not None:
        decision = decision_at_threshold([s.label for s in result.samples], result.scores, thresholds)
        target("decision.json").write_text(json.dumps(decision, indent=1) + "\n")
    examples = write_example_overlays(result, model.preprocess, out / "overlays", limit=n_examples)
    if output is not None:
        for ex in examples:
            output.record(ex["image"])
    params = dict(extra or {})
    params.update(model_params(model))
    params["test_images"] = result.n_images
    params["infer_ms_per_image"] = result.infer_ms_per_image
    if decision is not None:
        params["decision_at_model_threshold"] = decision
    target("report.md"), target("report.html")
    report = write_report(out, title, result.metrics, result.rows, examples, params)
    return TestRun(result, report, csv_path, metrics_path, decision)
