"""Resident memory of a PRN fit by phase: the synthetic pool, each forward of a training batch,
each loss, the validation.

RSS is sampled every 5 ms by a thread; each wrapped call records (RSS before, peak during,
RSS after). Tells memory that grows with the training set (held before the loop) from
memory of the loop itself (one batch's activations, which should not grow with it).

    python benchmarks/prn_fit_memory.py --images DIR --n 16 64 128 --out results.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path


def one_fit(folder: Path, n: int) -> dict:
    import psutil
    import torch

    from defectkit.models.prn import PRN

    torch.set_num_threads(2)
    proc = psutil.Process()
    peak = [0]

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    threading.Thread(target=sample, daemon=True).start()
    calls: list = []

    def wrap(name: str) -> None:
        original = getattr(PRN, name)

        def recorded(*args, **kwargs):
            before = proc.memory_info().rss
            peak[0] = before
            out = original(*args, **kwargs)
            calls.append(
                {
                    "call": name,
                    "before": before / 2**20,
                    "peak": peak[0] / 2**20,
                    "after": proc.memory_info().rss / 2**20,
                }
            )
            return out

        setattr(PRN, name, recorded)

    for name in ("_make_pool", "_logits", "_validate"):
        wrap(name)
    paths = sorted(folder.glob("*.png"))[:n]
    model = PRN(epochs=1, pool_size=16, seed=0, use_cache=False)
    model.fit(paths, progress=False)
    training = [c for c in calls if c["call"] == "_logits"]
    return {
        "images": len(paths),
        "rss_before_loop_mb": calls[0]["before"],
        "loop_peak_mb": max(c["peak"] for c in training),
        "first_forward": training[0],
        "steps": model.fit_info_.get("steps_per_epoch"),
        "calls": calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="a folder of good images")
    parser.add_argument("--n", type=int, nargs="+", default=[16, 64, 128])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("ROW " + json.dumps(one_fit(args.images, args.worker)), flush=True)
        return
    rows = []
    for n in args.n:  # a fresh process per size, so earlier fits leave nothing behind
        out = subprocess.run(
            [sys.executable, __file__, "--images", str(args.images), "--out", "-", "--worker", str(n)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        row = json.loads(next(line[4:] for line in out.splitlines() if line.startswith("ROW ")))
        print(
            row["images"],
            "images: before loop %.0f MiB, loop peak %.0f MiB, first forward %.0f -> %.0f MiB, %s steps"
            % (
                row["rss_before_loop_mb"],
                row["loop_peak_mb"],
                row["first_forward"]["before"],
                row["first_forward"]["peak"],
                row["steps"],
            ),
            flush=True,
        )
        rows.append(row)
    args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
