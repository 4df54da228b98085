"""A test run: evaluate a model on a labelled set, then write what a person reads.

Shared by ``defectkit test`` and ``defectkit demo``: metrics, a per-image CSV, overlays of
example images and the report, all from one ``evaluate_model`` call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from ..data.seen_anomalies import seen_file_names
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


def model_params(model) -> Dict[str, Any]:
    """The model's parameters, fit summary, versions and machine, as the report shows them."""
    params: Dict[str, Any] = {"method": model.method}
    params.update(model.get_params())
    params.pop("cache_dir", None)
    params["resolution"] = "native (tiled)" if getattr(model, "tiling_", None) is not None else model.preprocess.output_size
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
             extra: Dict[str, Any] = None, progress: bool = True, strict: bool = False,
             groups: Dict[str, Any] = None) -> TestRun:
    """Evaluate, then write per_image.csv, metrics.json, overlays and the report into ``out``.

    ``strict``: a mask whose size differs from its image's is an error, not a warning.
    ``groups``: named groups of defect types to score apart (a dataset's ``defect_groups``)."""
    out = Path(out)
    result = evaluate_model(model, test_samples, progress=progress, strict=strict, groups=groups)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = write_per_image_csv(result, out / "per_image.csv")
    metrics_path = out / "metrics.json"
    payload = dict(result.metrics)
    if result.group_metrics:
        payload["groups"] = result.group_metrics
    metrics_path.write_text(json.dumps(payload, indent=1) + "\n")
    examples = write_example_overlays(result, model, out / "overlays", limit=n_examples)
    params = dict(extra or {})
    params.update(model_params(model))
    params["test_images"] = result.n_images
    params["infer_ms_per_image"] = result.infer_ms_per_image
    report = write_report(out, title, result.metrics, result.rows, examples, params)
    return TestRun(result, report, csv_path, metrics_path)
