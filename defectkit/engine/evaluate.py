"""Score a fitted model on a labelled test set: protocol metrics, per-image rows, timing.

Why one function: the CLI ``test`` command, the demo and the benchmark must compute
metrics and inference time the same way, so a number in a report and a number in a
benchmark table are comparable. Masks are loaded with the model's own preprocessing
(resize + crop), so pixel metrics are computed at the resolution the model predicts
(docs/protocol.md#preprocessing). Nothing here feeds back into the model: no
threshold or normalisation chosen on the test set is stored anywhere.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch

from ..data.batches import load_images, load_masks
from ..data.mask_size import check_mask_sizes
from ..data.samples import Sample
from ..metrics import evaluate
from ..utils.progress import progress as progress_bar

#: Columns of the per-image CSV, in order.
PER_IMAGE_COLUMNS = ("path", "defect_type", "label", "score", "predicted_label")


@dataclass
class EvaluationResult:
    """What ``evaluate_model`` measured.

    ``metrics``: protocol metrics as fractions in [0, 1] (thresholds in score units);
    pixel metrics are absent when no test image has a ground-truth mask.
    ``rows``: one dict per test image (PER_IMAGE_COLUMNS); ``predicted_label`` uses the
    image F1-max threshold, which is chosen on this test set and is therefore only a
    description of the result, never a deployable threshold.
    ``maps`` (N x S x S) and ``masks`` (N x S x S, or None) are kept for overlays.
    """

    metrics: Dict[str, float]
    rows: List[Dict[str, Any]]
    samples: List[Sample]
    scores: np.ndarray
    maps: np.ndarray
    masks: Optional[np.ndarray]
    infer_seconds: float
    resolution: int
    batch_size: int
    timing: Dict[str, float] = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        return len(self.samples)

    @property
    def infer_ms_per_image(self) -> float:
        return 1000.0 * self.infer_seconds / max(1, self.n_images)

    @property
    def throughput_img_s(self) -> float:
        return self.n_images / self.infer_seconds if self.infer_seconds > 0 else float("nan")


def _test_samples(data: Any) -> List[Sample]:
    samples = list(getattr(data, "test", data))
    if not samples:
        raise ValueError("no test images to evaluate")
    for s in samples:
        if not isinstance(s, Sample):
            raise ValueError(f"evaluate_model needs labelled Samples (a data set's .test), got {type(s).__name__}")
    labels = {s.label for s in samples}
    if labels != {0, 1}:
        missing = "defective" if 1 not in labels else "good"
        raise ValueError(f"the test set has no {missing} images: image AUROC needs both good and defective ones")
    return samples


def _ground_truth(samples: List[Sample], preprocess) -> Optional[List[Optional[np.ndarray]]]:
    """Masks at the model's resolution; None for a defective image without a mask
    (left out of pixel metrics rather than counted as all-normal), or None overall
    when no image has a mask (then there are no pixel metrics). Mask sizes were
    checked by ``evaluate_model`` before scoring."""
    if not any(s.mask_path is not None for s in samples):
        return None
    stack = load_masks(samples, preprocess, check_sizes=False)[:, 0].numpy().astype(bool)
    return [None if (s.label == 1 and s.mask_path is None) else stack[i] for i, s in enumerate(samples)]


def evaluate_model(model, data: Any, progress: bool = False, warmup: bool = True,
                   strict: bool = False) -> EvaluationResult:
    """Predict every test image and compute the protocol metrics.

    ``data``: a data set (its ``.test`` is used) or a list of test Samples.
    Inference time is the wall time of ``model.predict`` on the preprocessed images
    (batch = ``model.batch_size``) divided by the number of images; decoding and
    resizing the files is timed apart (``timing["decode_seconds"]``), since it depends
    on the file format rather than on the method; the set is fed in chunks of whole batches only
    so a progress bar can advance, which does not change the batching. With
    ``warmup`` one image is predicted first, untimed, so one-time set-up costs
    (``warmup_seconds`` in ``result.timing``) do not inflate the per-image time.
    A mask whose size differs from its image's is reported before anything is scored: a
    MaskSizeWarning, or with ``strict`` a MaskSizeError (data/mask_size.py).
    """
    samples = _test_samples(data)
    check_mask_sizes(samples, strict)
    batch = max(1, int(getattr(model, "batch_size", 8) or 8))
    chunk = batch * 4
    timing: Dict[str, float] = {}
    if warmup:
        # One-time costs (loading backbone weights, building a search index, first-call
        # kernel set-up) are not per-image inference time: pay them before timing.
        t0 = time.perf_counter()
        model.predict(samples[:1])
        timing["warmup_seconds"] = time.perf_counter() - t0
    scores, maps = [], []
    elapsed = decode = 0.0
    with progress_bar(total=len(samples), desc="test", unit="img", enabled=progress) as bar:
        for start in range(0, len(samples), chunk):
            part = samples[start : start + chunk]
            t0 = time.perf_counter()
            images, _, _ = load_images(part, model.preprocess, on_error="raise")
            t1 = time.perf_counter()
            s, m = model.predict(images)
            elapsed += time.perf_counter() - t1
            decode += t1 - t0
            scores.append(np.asarray(s, dtype=np.float64))
            maps.append(np.asarray(m, dtype=np.float32))
            bar.update(len(part))
    timing["decode_seconds"] = decode
    scores_arr = np.concatenate(scores)
    maps_arr = np.concatenate(maps)
    labels = np.array([s.label for s in samples])

    masks = _ground_truth(samples, model.preprocess)
    if masks is None:
        metrics = evaluate(labels, scores_arr)
        mask_stack = None
    else:
        metrics = evaluate(labels, scores_arr, masks, maps_arr)
        mask_stack = np.stack([m if m is not None else np.zeros(maps_arr.shape[1:], bool) for m in masks])
    thr = metrics["image_f1_threshold"]
    rows = [
        {
            "path": str(s.path),
            "defect_type": s.defect_type,
            "label": int(s.label),
            "score": float(sc),
            "predicted_label": int(sc >= thr),
        }
        for s, sc in zip(samples, scores_arr)
    ]
    return EvaluationResult(
        metrics={k: float(v) for k, v in metrics.items()},
        rows=rows,
        samples=samples,
        scores=scores_arr,
        maps=maps_arr,
        masks=mask_stack,
        infer_seconds=elapsed,
        resolution=int(model.preprocess.output_size),
        batch_size=batch,
        timing=timing,
    )


def write_per_image_csv(result: EvaluationResult, path: Union[str, Path]) -> Path:
    """One row per test image (PER_IMAGE_COLUMNS), scores with full precision."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(PER_IMAGE_COLUMNS))
        w.writeheader()
        for row in result.rows:
            w.writerow({k: (repr(row[k]) if isinstance(row[k], float) else row[k]) for k in PER_IMAGE_COLUMNS})
    return path


def best_throughput(run_batch, images: torch.Tensor, batch: int, repeats: int = 3) -> float:
    """Images per second of ``run_batch`` over ``images`` in batches, best of ``repeats`` passes.

    Best-of timing with a warm-up removes one-off costs and noise from other processes,
    so two numbers measured this way (model vs backbone) are comparable.
    """
    run_batch(images[:batch])
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for start in range(0, len(images), batch):
            run_batch(images[start : start + batch])
        best = min(best, time.perf_counter() - t0)
    return len(images) / best


@torch.inference_mode()
def throughput_pair(model, images: torch.Tensor, repeats: int = 3) -> Dict[str, float]:
    """Model vs backbone-alone throughput (img/s) on the same preprocessed images.

    The backbone is the yardstick for a method's head: a head that is not the
    bottleneck keeps the model's throughput close to the backbone's.
    """
    strides = tuple(getattr(model, "strides", (8, 16)))
    batch = max(1, int(model.batch_size))
    bb = model.backbone_
    return {
        "model_img_s": best_throughput(lambda x: model.predict(x), images, batch, repeats),
        "backbone_img_s": best_throughput(lambda x: bb(x.to(model.device_), strides), images, batch, repeats),
    }
