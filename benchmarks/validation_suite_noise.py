"""How large and how noisy is a validation split? PatchCore (no training) scored on it at several seeds.

For each PatchCore seed the model holds out ``calibration_fraction`` of train/good (the same
seeded split the trained methods use for the same seed) and builds its bank from the rest.
The held-out normals plus synthetic anomalies made from them are scored:

* ``suite``: ``synth.validation_suite`` (DTD blends, CutPaste, stains, scratches, blur), at each
  of ``--suite-seeds`` with the held-out images fixed (model seed 0): the noise of the draw;
* ``mixed``: RealNet's current split (its DTD training synthesis, CutPaste, CutPaste-scar, one
  per held-out image), at the same seeds;
* ``suite`` at model seeds ``--model-seeds`` with suite seed = model seed + 1000 (as RealNet
  draws it): held-out images and draw both change, the noise between fit seeds.

A second PatchCore (``--other``, a smaller bank) is scored on the same splits, so the noise of
a paired difference between two models is measured too. No test image is read.

    python benchmarks/validation_suite_noise.py --data ../shared/data/mvtec_ad/bottle \
        --out benchmarks/results/validation-suite-<date>/patchcore-bottle
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
from defectkit.models.components.validation import family_scores, subsample, validation_scores
from defectkit.models.realnet.synth import make_synthesizer, synthesize_pool
from defectkit.synth.textures import resolve_textures
from defectkit.synth.validation import mixed_generator
from defectkit.synth.validation_suite import suite_anomalies
from defectkit.utils.images import to_uint8

METRICS = ("image_auroc", "pixel_auroc", "aupro", "score")


def split(kind: str, normals: torch.Tensor, seed: int, textures: Path, per_image: int):
    """(images, labels, masks, families) of one validation split."""
    if kind == "suite":
        suite = suite_anomalies(normals, per_image, seed=seed, textures=textures)
        anomalies, masks, families, info = suite.images, suite.masks, suite.families, suite.info()
    else:
        gen = mixed_generator(make_synthesizer("dtd", textures=textures))
        anomalies, masks, _ = synthesize_pool(to_uint8(normals), len(normals) * per_image, gen, seed=seed)
        masks, families, info = masks > 0.5, np.full(len(anomalies), "mixed"), {}
    images = torch.cat([normals, anomalies])
    labels = np.r_[np.zeros(len(normals), int), np.ones(len(anomalies), int)]
    all_masks = torch.cat([torch.zeros(len(normals), *masks.shape[1:], dtype=torch.bool), masks]).numpy()
    return images, labels, all_masks, np.r_[np.full(len(normals), ""), families], info


def score(model, images, labels, masks, families):
    scores, maps = model.predict(images)
    m, mp = subsample(masks), subsample(maps)
    out = validation_scores(labels, scores, m, mp)
    out["families"] = family_scores(labels, scores, m, mp, families)
    return out


def cell(values) -> str:
    v = 100 * np.asarray(values, float)
    return f"{v.mean():.2f} ± {v.std(ddof=1) if len(v) > 1 else 0:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--suite-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--per-image", type=int, default=1)
    parser.add_argument("--other", type=int, default=1024, help="max_bank_size of the second PatchCore")
    parser.add_argument("--textures", default=None)
    args = parser.parse_args()
    textures = resolve_textures(args.textures, what="the validation suite benchmark")
    train = load_dataset(args.data).train
    rows = []
    with tempfile.TemporaryDirectory(prefix="defectkit-suite-noise-") as cache:
        for model_seed in sorted(set(args.model_seeds) | {0}):
            models = {
                "patchcore": PatchCore(seed=model_seed, device="cpu", cache_dir=cache),
                f"patchcore bank {args.other}": PatchCore(
                    seed=model_seed, device="cpu", cache_dir=cache, max_bank_size=args.other
                ),
            }
            for model in models.values():
                model.fit(train, progress=False)
            names = set(models["patchcore"].fit_info_["val_image_names"])
            held = [s.path for s in train if s.path.name in names]
            normals, _, _ = load_images(held, models["patchcore"].preprocess, on_error="raise")
            jobs = []
            if model_seed == 0:
                jobs += [("suite", s, "suite seed") for s in args.suite_seeds]
                jobs += [("mixed", s, "suite seed") for s in args.suite_seeds]
            if model_seed in args.model_seeds:
                jobs.append(("suite", model_seed + 1000, "model seed"))
            for kind, seed, varied in jobs:
                t0 = time.perf_counter()
                images, labels, masks, families, info = split(kind, normals, seed, textures, args.per_image)
                make_s = time.perf_counter() - t0
                for name, model in models.items():
                    t1 = time.perf_counter()
                    metrics = score(model, images, labels, masks, families)
                    row = dict(
                        split=kind,
                        varied=varied,
                        model=name,
                        model_seed=model_seed,
                        split_seed=seed,
                        normals=int((labels == 0).sum()),
                        anomalies=int(labels.sum()),
                        suite=info,
                        make_seconds=round(make_s, 1),
                        score_seconds=round(time.perf_counter() - t1, 1),
                        **metrics,
                    )
                    print(json.dumps({k: v for k, v in row.items() if k != "families"}), flush=True)
                    rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rows.json").write_text(
        json.dumps({"data": str(args.data), "rows": rows, "environment": environment_info()}, indent=1)
    )
    (args.out / "summary.md").write_text(summary(rows))
    print(summary(rows))


def summary(rows) -> str:
    lines = [
        "| split | varied (3 values) | model | normals + anomalies | I-AUROC | P-AUROC | AUPRO | score |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups = sorted({(r["split"], r["varied"], r["model"]) for r in rows}, key=str)
    for key in groups:
        mine = [r for r in rows if (r["split"], r["varied"], r["model"]) == key]
        size = f"{mine[0]['normals']} + {int(np.mean([r['anomalies'] for r in mine]))}"
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {size} | "
            + " | ".join(cell([r[m] for r in mine]) for m in METRICS)
            + " |"
        )
    models = sorted({r["model"] for r in rows})
    if len(models) == 2:
        lines += ["", f"Paired difference `{models[0]}` - `{models[1]}` on the same split (points):", ""]
        lines += ["| split | varied | I-AUROC | P-AUROC | AUPRO | score |", "|---|---|---|---|---|---|"]
        for split_kind, varied in sorted({(r["split"], r["varied"]) for r in rows}):
            a = [r for r in rows if (r["split"], r["varied"], r["model"]) == (split_kind, varied, models[0])]
            b = [r for r in rows if (r["split"], r["varied"], r["model"]) == (split_kind, varied, models[1])]
            lines.append(
                f"| {split_kind} | {varied} | "
                + " | ".join(cell([x[m] - y[m] for x, y in zip(a, b)]) for m in METRICS)
                + " |"
            )
    lines += ["", "Suite, per family (`patchcore`, suite seed varied, model seed 0):", ""]
    lines += ["| family | anomalies | I-AUROC | P-AUROC | AUPRO | score |", "|---|---|---|---|---|---|"]
    mine = [r for r in rows if (r["split"], r["varied"], r["model"]) == ("suite", "suite seed", "patchcore")]
    if mine:
        for fam in mine[0]["families"]:
            counts = [r["suite"]["families"][fam] for r in mine]
            lines.append(
                f"| {fam} | {int(np.mean(counts))} | "
                + " | ".join(cell([r["families"][fam][m] for r in mine]) for m in METRICS)
                + " |"
            )
        skipped = {f: [r["suite"]["skipped"][f] for r in mine] for f in mine[0]["suite"]["skipped"]}
        lines += ["", "Draws skipped by the visible-change filter, per suite seed: " + json.dumps(skipped)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
