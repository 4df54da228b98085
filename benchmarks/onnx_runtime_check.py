"""Exported models against their torch models on a category's test set (not a test: a benchmark).

For each METHOD with MODELS/METHOD.pt and MODELS/METHOD.onnx (written by `defectkit train`
and `defectkit export`): the protocol metrics of the test set scored by the torch model and
by the ONNX runtime (``OnnxScorer``, through ``engine.evaluate.evaluate_model``), their
difference in points, the export's parity record (METHOD.parity.json), the fraction of
held-out normals flagged at the model's stored threshold, and the test set's good/defect
confusion at that threshold for both engines. The threshold was chosen at fit on held-out
normals, never on this test set.

    python benchmarks/onnx_runtime_check.py --models DIR --data ../shared/data/mvtec_ad/bottle \\
        --methods patchcore simplenet --out benchmarks/results/onnx-parity-<date>
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

from defectkit import __version__
from defectkit.data import ImageReadError, load_dataset
from defectkit.deploy.onnx_scorer import ArrayBatch, OnnxScorer
from defectkit.engine.evaluate import evaluate_model
from defectkit.models import load_model

METRICS = ("image_auroc", "pixel_auroc", "aupro", "pixel_ap", "image_f1_max", "pixel_f1_max")


class RuntimeModel:
    """An OnnxScorer with the few model attributes ``evaluate_model`` reads."""

    tiling_ = None

    def __init__(self, scorer: OnnxScorer):
        self.scorer = scorer
        self.preprocess = scorer.preprocess
        self.batch_size = scorer.batch_size

    def load_inputs(self, items, on_error="raise"):
        batch, ok, errors = self.scorer.load_batch([getattr(i, "path", i) for i in items])
        if errors and on_error == "raise":
            raise ImageReadError(*errors[0])
        return batch, ok, errors

    def predict(self, images):
        if isinstance(images, ArrayBatch):
            return self.scorer.score(images)
        return self.scorer.predict([getattr(i, "path", i) for i in images])


def confusion(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    flagged = scores >= threshold
    return {
        "good_as_good": int(np.sum(~flagged & (labels == 0))),
        "good_as_defect": int(np.sum(flagged & (labels == 0))),
        "defect_as_defect": int(np.sum(flagged & (labels == 1))),
        "defect_as_good": int(np.sum(~flagged & (labels == 1))),
    }


def check(method: str, models: Path, data) -> dict:
    model = load_model(models / f"{method}.pt", device="cpu")
    scorer = OnnxScorer(models / f"{method}.onnx", batch_size=8)
    torch_result = evaluate_model(model, data)
    onnx_result = evaluate_model(RuntimeModel(scorer), data)
    t = model.thresholds_
    labels = np.array([s.label for s in torch_result.samples])
    normals = np.asarray(t.normal_scores)
    row = {
        "method": method,
        "torch": {k: torch_result.metrics.get(k) for k in METRICS},
        "onnx": {k: onnx_result.metrics.get(k) for k in METRICS},
        "max_abs_point_diff": max(
            abs(100 * (torch_result.metrics[k] - onnx_result.metrics[k])) for k in METRICS if k in torch_result.metrics
        ),
        "max_abs_test_score_diff": float(np.max(np.abs(torch_result.scores - onnx_result.scores))),
        "threshold": t.describe(),
        "image_threshold": t.image,
        "held_out_normals": int(normals.size),
        "held_out_flagged_fraction": float(np.mean(normals >= t.image)),
        "confusion_torch": confusion(labels, torch_result.scores, t.image),
        "confusion_onnx": confusion(labels, onnx_result.scores, t.image),
        "labels_identical": bool(np.array_equal(torch_result.scores >= t.image, onnx_result.scores >= t.image)),
        "parity": json.loads((models / f"{method}.parity.json").read_text()),
    }
    return row


def summary(rows, args) -> str:
    lines = [
        "# Exported ONNX models vs torch, bottle, seed 0",
        "",
        "| method | parity b1 score / map (rel.) | parity b8 score / map (rel.) | I-AUROC torch / onnx | "
        "P-AUROC torch / onnx | AUPRO torch / onnx | max diff (points) | held-out flagged | "
        "test good: ok / flagged | test defect: caught / missed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b = {x["batch_size"]: x for x in r["parity"]["batches"]}
        c = r["confusion_onnx"]

        def pair(k, r=r):
            return f"{100 * r['torch'][k]:.2f} / {100 * r['onnx'][k]:.2f}"

        lines.append(
            f"| {r['method']} | {b[1]['relative_score_diff']:.2g} / {b[1]['relative_map_diff']:.2g} | "
            f"{b[8]['relative_score_diff']:.2g} / {b[8]['relative_map_diff']:.2g} | {pair('image_auroc')} | "
            f"{pair('pixel_auroc')} | {pair('aupro')} | {r['max_abs_point_diff']:.3f} | "
            f"{r['held_out_flagged_fraction']:.3f} of {r['held_out_normals']} | {c['good_as_good']} / "
            f"{c['good_as_defect']} | {c['defect_as_defect']} / {c['defect_as_good']} |"
        )
    lines += [
        "",
        "Parity: max |difference| / score scale at export (runtime at batch 1 and 8 vs the torch model, "
        "on the held-out normal training images); tolerance 1e-4. Confusion at the threshold stored in the "
        "model (1 % FPR on held-out normals, chosen at fit; never on the test set), from the ONNX runtime; "
        "the torch model's is identical where `labels_identical` is true in results.json.",
        "",
        f"Command: `python {' '.join(sys.argv)}`",
        "",
        f"defectkit {__version__}, Python {platform.python_version()}, {platform.platform()}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", required=True, type=Path)
    p.add_argument("--data", required=True)
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args()
    data = load_dataset(args.data)
    rows = []
    for method in args.methods:
        rows.append(check(method, args.models, data))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "parity"}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "summary.md").write_text(summary(rows, args))
    print((args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
