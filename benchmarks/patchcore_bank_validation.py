"""Choose PatchCore's bank cap and candidate pool on validation data, never on test images.

For each seed, PatchCore holds out ``calibration_fraction`` of train/good (its seeded split);
the held-out normals and synthetic anomalies made from them (``synth.validation.builtin_anomalies``)
are scored by every variant, and the validation metrics (image AUROC, pixel AUROC, AUPRO on
the subsampled grid, ``models.components.validation``) are written per variant. Features are
cached in a temporary folder, so variants after the first cost their selection only.

    python benchmarks/patchcore_bank_validation.py --data ../shared/data/mvtec_ad/bottle --seeds 0 1 2 \
        --out benchmarks/results/patchcore-bank-validation-<date>
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from defectkit.data import load_dataset
from defectkit.data.batches import load_images
from defectkit.engine.environment import environment_info
from defectkit.models import PatchCore
from defectkit.models.components.validation import subsample, validation_scores
from defectkit.synth.validation import builtin_anomalies

VARIANTS = {
    "exact (no cap)": {"max_bank_size": 0},
    "cap 8192, pool 2x": {"max_bank_size": 8192, "candidate_factor": 2.0},
    "cap 16384, pool 2x": {"max_bank_size": 16384, "candidate_factor": 2.0},
    "cap 16384, pool 4x": {"max_bank_size": 16384, "candidate_factor": 4.0},
    "cap 32768, pool 2x": {"max_bank_size": 32768, "candidate_factor": 2.0},
    "cap 4096, pool 2x": {"max_bank_size": 4096, "candidate_factor": 2.0},
    "cap 2048, pool 2x": {"max_bank_size": 2048, "candidate_factor": 2.0},
    # the official code's adaptive pooling of each neighbourhood to a target width, narrower
    # than the 152-wide mean: the exported search costs in proportion to the width
    "adaptive 32 per stage": {"aggregation": "adaptive", "embed_dim": 32},
    "adaptive 24 per stage": {"aggregation": "adaptive", "embed_dim": 24},
    "adaptive 48 per stage": {"aggregation": "adaptive", "embed_dim": 48},
}


def validation_set(model: PatchCore, held_out):
    """Held-out normals and two synthetic anomalies per image -> (images, labels, masks)."""
    normals, _, _ = load_images(held_out, model.preprocess, on_error="raise")
    anomalies, masks = builtin_anomalies(normals, 2, seed=model.seed + 1)
    images = torch.cat([normals, anomalies])
    labels = np.r_[np.zeros(len(normals), int), np.ones(len(anomalies), int)]
    all_masks = torch.cat([torch.zeros(len(normals), *masks.shape[1:], dtype=torch.bool), masks]).numpy()
    return images, labels, all_masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    train = load_dataset(args.data).train
    rows = []
    with tempfile.TemporaryDirectory(prefix="defectkit-bank-val-") as cache:
        for seed in args.seeds:
            val = None
            for name in args.variants:
                params = VARIANTS[name]
                model = PatchCore(seed=seed, device="cpu", cache_dir=cache, **params)
                start = time.perf_counter()
                model.fit(train, progress=False)
                fit_s = time.perf_counter() - start
                if val is None:
                    held = [p for p in (s.path for s in train) if p.name in set(model.fit_info_["val_image_names"])]
                    val = validation_set(model, held)
                images, labels, masks = val
                scores, maps = model.predict(images)
                metrics = validation_scores(labels, scores, subsample(masks), subsample(maps))
                row = dict(
                    variant=name,
                    seed=seed,
                    **params,
                    bank_size=model.fit_info_["bank_size"],
                    candidates=model.fit_info_["coreset_candidates"],
                    coreset_seconds=model.fit_info_["coreset_seconds"],
                    fit_seconds_cached=fit_s,
                    **metrics,
                )
                print(json.dumps(row), flush=True)
                rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "validation.json").write_text(json.dumps({"rows": rows, "environment": environment_info()}, indent=1))
    lines = [
        "| variant | seeds | bank | val I-AUROC | val P-AUROC | val AUPRO | mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in args.variants:
        mine = [r for r in rows if r["variant"] == name]

        def cell(key: str, mine=mine) -> str:
            values = 100 * np.array([r[key] for r in mine])
            return f"{values.mean():.2f} ± {values.std(ddof=1) if len(values) > 1 else 0:.2f}"

        lines.append(
            f"| {name} | {len(mine)} | {mine[0]['bank_size']} | {cell('image_auroc')} | {cell('pixel_auroc')} | "
            f"{cell('aupro')} | {cell('score')} |"
        )
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
