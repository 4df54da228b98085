"""PaDiM's ``n_features`` chosen on the validation split, never on test images.

For each seed, PaDiM is fitted on the normal training images minus its seeded hold-out
(``calibration_fraction``, the same split ``fit`` draws), for every candidate
``n_features``. The held-out normals plus ``--anomalies-per-image`` synthetic anomalies
made from them (``synth.validation.builtin_anomalies``) are scored with the one validation
scorer (``models.components.validation``: mean of image AUROC, pixel AUROC and AUPRO).
Nothing under ``test/`` is read. Writes ``results.json`` and ``summary.md`` to ``--out``.

    python benchmarks/padim_n_features.py --data ../shared/data/mvtec_ad/bottle \
        --seeds 0 1 2 --candidates 40 100 176 --out benchmarks/results/padim-n-features-<date>
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from defectkit.data import load_dataset
from defectkit.data.splits import split_validation
from defectkit.engine.environment import environment_info
from defectkit.models.base import training_paths
from defectkit.models.components.validation import DEFAULT_METRICS, subsample, validation_scores
from defectkit.models.factory import build_model
from defectkit.synth.validation import builtin_anomalies


def validate(model, held_out, per_image: int, seed: int) -> dict:
    """Validation metrics of a fitted model on held-out normals + synthetic anomalies of them."""
    normals = model.as_tensor(held_out)
    anomalies, masks = builtin_anomalies(normals, per_image, seed=seed + 1)
    n_scores, n_maps = model.predict(normals)
    a_scores, a_maps = model.predict(anomalies)
    labels = np.r_[np.zeros(len(normals), int), np.ones(len(anomalies), int)]
    all_masks = np.concatenate([np.zeros((len(normals),) + masks.shape[1:], bool), masks.numpy()])
    return validation_scores(
        labels,
        np.r_[n_scores, a_scores],
        subsample(all_masks),
        subsample(np.concatenate([n_maps, a_maps])),
        DEFAULT_METRICS,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="category folder (its train/ side only is read)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--candidates", nargs="+", type=int, default=[40, 100, 176])
    parser.add_argument("--anomalies-per-image", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--out", required=True)
    parser.add_argument("--force", action="store_true", help="replace an existing results.json in --out")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if (out / "results.json").exists() and not args.force:
        parser.error(f"{out / 'results.json'} exists; pass --force to replace it")
    paths = training_paths(load_dataset(args.data))
    rows = []
    for seed in args.seeds:
        for n in args.candidates:
            model = build_model("padim", {"n_features": n}, seed=seed, image_size=args.image_size, device="cpu")
            _, held_idx = split_validation(len(paths), model.calibration_fraction, seed)
            held_out = [paths[i] for i in held_idx]
            t0 = time.perf_counter()
            model.fit(paths, progress=False)
            assert sorted(p.name for p in held_out) == sorted(model.fit_info_["val_image_names"])
            metrics = validate(model, held_out, args.anomalies_per_image, seed)
            row = {
                "seed": seed,
                "n_features": n,
                "fit_seconds": time.perf_counter() - t0,
                "val_images": len(held_out),
                **metrics,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = [
        "# PaDiM n_features on the validation split",
        "",
        f"`{shlex.join([Path(sys.executable).name, *sys.argv])}`",
        "",
        f"Data: {args.data} (train/good only; held-out normals + {args.anomalies_per_image} builtin "
        f"synthetic anomalies each). Seeds {args.seeds}. Mean ± sample std over seeds.",
        "",
        "| n_features | val I-AUROC | val P-AUROC | val AUPRO | val score |",
        "|---|---|---|---|---|",
    ]
    for n in args.candidates:
        mine = [r for r in rows if r["n_features"] == n]
        cells = []
        for key in (*DEFAULT_METRICS, "score"):
            v = 100 * np.array([r[key] for r in mine])
            cells.append(f"{v.mean():.2f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.2f}")
        summary.append(f"| {n} | " + " | ".join(cells) + " |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps(
            {
                "rows": rows,
                "argv": sys.argv,
                "environment": environment_info("cpu"),
                "torch_threads": torch.get_num_threads(),
            },
            indent=2,
        )
    )
    (out / "summary.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
