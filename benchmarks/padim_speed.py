"""PaDiM's inference speed against its backbone alone, and its model file size.

With ``--fit``, fits PaDiM (defaults, seed 0) on the first ``--train`` normal training
images (the prediction cost does not depend on how many images the Gaussians saw) and
saves it to ``--model``. Without it, loads ``--model`` and times ``predict`` and the
backbone alone on the first 32 test images, best of 3 passes
(``engine.evaluate.throughput_pair``); only this part needs the machine to itself:

    nice -n 15 python benchmarks/padim_speed.py --fit --data ../shared/data/mvtec_ad/bottle --model /tmp/padim.pt
    flock /tmp/timing.lock python benchmarks/padim_speed.py --data ../shared/data/mvtec_ad/bottle \
        --model /tmp/padim.pt --out benchmarks/results/padim-speed-<date>
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from defectkit.data import load_dataset
from defectkit.engine.environment import environment_info
from defectkit.engine.evaluate import throughput_pair
from defectkit.models import load_model
from defectkit.models.base import training_paths
from defectkit.models.factory import build_model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--train", type=int, default=60, help="normal training images to fit on (default 60)")
    parser.add_argument("--model", required=True, help="model file to write (--fit) or to time")
    parser.add_argument("--fit", action="store_true", help="fit and save the model, no timing")
    parser.add_argument("--force", action="store_true", help="replace an existing --model")
    parser.add_argument("--out", help="results folder of the timing run")
    args = parser.parse_args(argv)
    data = load_dataset(args.data)
    if args.fit:
        model = build_model("padim", None, seed=0, device="cpu")
        model.fit(training_paths(data)[: args.train], progress=False).save(args.model, overwrite=args.force)
        return 0
    if not args.out:
        parser.error("--out is needed for the timing run")
    model = load_model(args.model, device="cpu")
    size_mb = Path(args.model).stat().st_size / 1e6
    images = model.as_tensor([s.path for s in data.test[:32]])
    speed = throughput_pair(model, images)
    result = {
        "model_file_mb": size_mb,
        **speed,
        "images": len(images),
        "batch_size": model.batch_size,
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "argv": sys.argv,
        "environment": environment_info("cpu"),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
