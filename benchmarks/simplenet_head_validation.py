"""SimpleNet head and map options compared on the validation split, never on test images.

The frozen features of one category and seed (training vectors, validation set: the held-out
normals plus their synthetic anomalies, exactly what ``fit`` builds) are computed once; every
candidate is then trained on them with ``train_on_vectors``, which keeps the epoch of the best
validation score as ``fit`` does. For each trained model the post-hoc map options
(``blur_sigma``, ``image_score``) are replayed on the kept epoch without retraining. Nothing
under ``test/`` is read. Writes ``results.json`` and ``summary.md`` to ``--out``.

    python benchmarks/simplenet_head_validation.py --data ../shared/data/mvtec_ad/bottle \
        --seeds 0 --candidates '{}' '{"disc_layers": 2}' --out benchmarks/results/<name>
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from defectkit.data import load_dataset
from defectkit.engine.environment import environment_info
from defectkit.models.base import training_paths
from defectkit.models.simplenet.model import SimpleNet
from defectkit.utils.device import seed_everything

SIGMAS = (0.0, 2.0, 4.0, 6.0, 8.0)
IMAGE_SCORES = ("map_max", "patch_max")


class _Captured(Exception):
    """Raised by the stand-in for ``train_on_vectors`` once fit has built the features."""


def fit_features(data: str, seed: int, common: dict):
    """(training vectors, validation set) exactly as ``SimpleNet.fit`` builds them."""
    model = SimpleNet(seed=seed, **common)
    box = {}

    def grab(vectors, val=None, progress=False):
        box.update(vectors=vectors, val=val)
        raise _Captured

    model.train_on_vectors = grab  # type: ignore[method-assign]
    try:
        model.fit(load_dataset(data), progress=False)
    except _Captured:
        pass
    return box["vectors"], box["val"]


def train_candidate(vectors, val, seed: int, common: dict, params: dict) -> SimpleNet:
    model = SimpleNet(seed=seed, **common, **params)
    model.check_params()
    seed_everything(seed)
    model.fit_info_ = {}
    return model.train_on_vectors(vectors.clone(), val)


def replay(model: SimpleNet, val) -> list:
    """Validation metrics of the kept epoch for every blur sigma and image score."""
    own = (model.blur_sigma, model.image_score)
    rows = []
    for sigma in SIGMAS:
        for image_score in IMAGE_SCORES:
            model.blur_sigma, model.image_score = sigma, image_score
            rows.append({"blur_sigma": sigma, "image_score": image_score, **model._validate(val)})
    model.blur_sigma, model.image_score = own
    model.discriminator_.eval()
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="category folder (its train/ side only is read)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--candidates", nargs="+", default=["{}"], help="JSON dicts of SimpleNet parameters")
    parser.add_argument(
        "--common",
        default="{}",
        help="JSON dict of SimpleNet parameters for the features and every candidate (e.g. the validation split)",
    )
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--no-replay", action="store_true", help="skip the post-hoc blur / image score grid")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = dict(backbone=args.backbone, image_size=args.image_size, device="cpu", **json.loads(args.common))
    category = Path(args.data).name
    n_train = len(training_paths(load_dataset(args.data)))
    rows = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        vectors, val = fit_features(args.data, seed, common)
        feature_seconds = time.perf_counter() - t0
        for spec in args.candidates:
            params = json.loads(spec)
            t1 = time.perf_counter()
            model = train_candidate(vectors, val, seed, common, params)
            info = model.fit_info_
            row = {
                "category": category,
                "seed": seed,
                "params": params,
                "train_images": n_train,
                "feature_seconds": feature_seconds,
                "train_seconds": time.perf_counter() - t1,
                "best_epoch": info["best_epoch"],
                "epochs_run": info["epochs_run"],
                **info["val_metrics"],
                "curve": [{k: c[k] for k in ("epoch", "loss", "score") if k in c} for c in info["curve"]],
            }
            if not args.no_replay:
                row["replay"] = replay(model, val)
            rows.append(row)
            brief = {k: v for k, v in row.items() if k not in ("curve", "replay")}
            print(json.dumps(brief), flush=True)
            if "replay" in row:
                for r in row["replay"]:
                    print(
                        f"  sigma {r['blur_sigma']:.0f} {r['image_score']:9s} I {r['image_auroc']:.4f} "
                        f"P {r['pixel_auroc']:.4f} PRO {r['aupro']:.4f} score {r['score']:.4f}",
                        flush=True,
                    )
    results = out / "results.json"
    previous = json.loads(results.read_text())["rows"] if results.exists() else []
    results.write_text(
        json.dumps(
            {
                "rows": previous + rows,
                "argv": sys.argv,
                "command": shlex.join([Path(sys.executable).name, *sys.argv]),
                "environment": environment_info("cpu"),
                "torch_threads": torch.get_num_threads(),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
