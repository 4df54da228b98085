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

from ..data.batches import load_masks
from ..data.images import read_mask, resize_mask
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
    ``maps`` (N x S x S) and ``masks`` (N x S x S, or None) are kept for overlays;
    ``valid`` (N x S x S bool, or None when every pixel is real) marks the pixels that
    were scored (padding from ``resize="keep"`` is not). ``group_metrics``: metrics per
    named group of defect types (MVTec LOCO AD's logical and structural anomalies).
    """

    metrics: Dict[str, float]
    rows: List[Dict[str, Any]]
    samples: List[Sample]
    scores: np.ndarray
    maps: np.ndarray
    masks: Optional[np.ndarray]
    infer_seconds: float
    resolution: Union[int, str]
    batch_size: int
    timing: Dict[str, float] = field(default_factory=dict)
    valid: Optional[np.ndarray] = None
    group_metrics: Dict[str, Dict[str, float]] = field(default_factory=dict)

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


def _masks_like(samples: List[Sample], model, maps: List[np.ndarray]) -> Optional[List[Optional[np.ndarray]]]:
    """Ground-truth masks on the grid of each map: None for a defective image without a mask
    (left out of pixel metrics rather than counted as all-normal), or None overall when no
    image has a mask (then there are no pixel metrics). Preprocessed models: resized and
    padded like their images; tiled models: at each image's own resolution (a mask of
    another size is resized to it, nearest neighbour)."""
    if not any(s.mask_path is not None for s in samples):
        return None
    if getattr(model, "tiling_", None) is None:
        stack = load_masks(samples, model.preprocess, check_sizes=False)[:, 0].numpy().astype(bool)
        return [None if (s.label == 1 and s.mask_path is None) else stack[i] for i, s in enumerate(samples)]
    out: List[Optional[np.ndarray]] = []
    for s, m in zip(samples, maps):
        if s.mask_path is None:
            out.append(None if s.label == 1 else np.zeros(m.shape, bool))
            continue
        mask = read_mask(s.mask_path)
        out.append(mask if mask.shape == m.shape else resize_mask(mask, m.shape))
    return out


def _common_grid(maps: List[np.ndarray], valid: List[Optional[np.ndarray]]):
    """Maps of possibly different sizes on one canvas -> (N x H x W maps, N x H x W valid or None).
    Pixels outside an image (or outside its real-pixel box) are invalid and hold the image's
    lowest real value, so they never look anomalous in overlays either."""
    shapes = {m.shape for m in maps}
    if len(shapes) == 1 and all(v is None for v in valid):
        return np.stack(maps), None
    h = max(m.shape[0] for m in maps)
    w = max(m.shape[1] for m in maps)
    out = np.empty((len(maps), h, w), np.float32)
    ok = np.zeros((len(maps), h, w), bool)
    for i, (m, v) in enumerate(zip(maps, valid)):
        real = np.ones(m.shape, bool) if v is None else v
        out[i] = float(m[real].min()) if real.any() else 0.0
        out[i, : m.shape[0], : m.shape[1]] = np.where(real, m, out[i, 0, 0])
        ok[i, : m.shape[0], : m.shape[1]] = real
    return out, ok


def _pad_masks(masks: List[Optional[np.ndarray]], shape) -> List[Optional[np.ndarray]]:
    out = []
    for m in masks:
        if m is None or m.shape == shape:
            out.append(m)
            continue
        big = np.zeros(shape, bool)
        big[: m.shape[0], : m.shape[1]] = m
        out.append(big)
    return out


def evaluate_model(
    model,
    data: Any,
    progress: bool = False,
    warmup: bool = True,
    strict: bool = False,
    groups: Optional[Dict[str, Any]] = None,
) -> EvaluationResult:
    """Predict every test image and compute the protocol metrics.

    ``data``: a data set (its ``.test`` is used) or a list of test Samples.
    Inference time is the wall time of ``model.predict`` on the loaded images
    (batch = ``model.batch_size``) divided by the number of images; decoding and
    resizing the files is timed apart (``timing["decode_seconds"]``), since it depends
    on the file format rather than on the method; the set is fed in chunks of whole batches only
    so a progress bar can advance, which does not change the batching. With
    ``warmup`` one image is predicted first, untimed, so one-time set-up costs
    (``warmup_seconds`` in ``result.timing``) do not inflate the per-image time.

    Padding added by ``resize="keep"`` is left out of the pixel metrics (``result.valid``).
    A tiled model is scored one image at a time at the images' own resolution (its
    ``resolution`` is "native"); cutting and resizing the windows counts as inference.
    When the data set names groups of defect types (``groups``, else ``data.defect_groups``;
    MVTec LOCO AD: logical and structural), ``result.group_metrics`` holds the metrics of
    the good images plus each group alone.
    A mask whose size differs from its image's is reported before anything is scored: a
    MaskSizeWarning, or with ``strict`` a MaskSizeError (data/mask_size.py).
    """
    samples = _test_samples(data)
    check_mask_sizes(samples, strict)
    tiled = getattr(model, "tiling_", None) is not None
    batch = max(1, int(getattr(model, "batch_size", 8) or 8))
    chunk = 1 if tiled else batch * 4
    timing: Dict[str, float] = {}
    if warmup:
        # One-time costs (loading backbone weights, building a search index, first-call
        # kernel set-up) are not per-image inference time: pay them before timing.
        t0 = time.perf_counter()
        model.predict(samples[:1])
        timing["warmup_seconds"] = time.perf_counter() - t0
    scores: List[np.ndarray] = []
    maps: List[np.ndarray] = []
    valid: List[Optional[np.ndarray]] = []
    elapsed = decode = 0.0
    with progress_bar(total=len(samples), desc="test", unit="img", enabled=progress) as bar:
        for start in range(0, len(samples), chunk):
            part = samples[start : start + chunk]
            t0 = time.perf_counter()
            images, _, _ = model.load_inputs(part, on_error="raise")
            t1 = time.perf_counter()
            s, m = model.predict(images)
            elapsed += time.perf_counter() - t1
            decode += t1 - t0
            scores.append(np.asarray(s, dtype=np.float64))
            maps.extend(np.asarray(m, dtype=np.float32))
            boxes = getattr(images, "boxes", None)
            valid.extend([None if (boxes is None or b.full) else b.mask() for b in boxes] if boxes else [None] * len(m))
            bar.update(len(part))
    timing["decode_seconds"] = decode
    scores_arr = np.concatenate(scores)
    labels = np.array([s.label for s in samples])

    masks = _masks_like(samples, model, maps)
    maps_arr, valid_arr = _common_grid(maps, valid)
    if masks is None:
        metrics = evaluate(labels, scores_arr)
        mask_stack = None
    else:
        masks = _pad_masks(masks, maps_arr.shape[1:])
        metrics = evaluate(labels, scores_arr, masks, maps_arr, valid=valid_arr)
        mask_stack = np.stack([m if m is not None else np.zeros(maps_arr.shape[1:], bool) for m in masks])
    if groups is None:
        groups = getattr(data, "defect_groups", None)
    group_metrics = _group_metrics(groups, samples, labels, scores_arr, masks, maps_arr, valid_arr)
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
        resolution="native" if tiled else int(model.preprocess.output_size),
        batch_size=batch,
        timing=timing,
        valid=valid_arr,
        group_metrics=group_metrics,
    )


def _group_metrics(groups, samples, labels, scores, masks, maps, valid) -> Dict[str, Dict[str, float]]:
    """Metrics of good images + each named group of defect types ({name: defect types})."""
    groups = groups or {}
    out: Dict[str, Dict[str, float]] = {}
    for name, types in groups.items():
        idx = [i for i, s in enumerate(samples) if s.label == 0 or s.defect_type in types]
        if not any(labels[i] for i in idx) or all(labels[i] for i in idx):
            continue
        sub_masks = None if masks is None else [masks[i] for i in idx]
        m = evaluate(
            labels[idx],
            scores[idx],
            sub_masks,
            None if masks is None else maps[idx],
            valid=None if (masks is None or valid is None) else valid[idx],
        )
        out[name] = {k: float(v) for k, v in m.items()}
        out[name]["n_defective"] = float(sum(labels[i] for i in idx))
    return out


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
