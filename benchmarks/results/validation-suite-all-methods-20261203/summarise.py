"""Fit time and kept-epoch validation metrics of the six fits of run.sh, read from their model files.

Only ``fit_info_`` is read (times measured inside the fit, validation metrics on held-out
training normals plus synthetic anomalies); no test image is scored.

    PYTHONPATH=$PWD python benchmarks/results/validation-suite-all-methods-20261203/summarise.py /tmp/suite-all
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from defectkit.models import load_model

RUNS = ("simplenet-own", "simplenet-suite", "prn-own", "prn-suite", "mlff-own", "mlff-suite")
TIMES = ("train_seconds", "feature_seconds", "prepare_seconds", "loop_seconds", "validation_seconds")


def main(folder: Path) -> None:
    rows = {}
    for name in RUNS:
        info = load_model(folder / f"{name}.pt", device="cpu").fit_info_
        curve = [c for c in info["curve"] if "score" in c]
        rows[name] = {
            **{k: round(info[k], 2) for k in TIMES if k in info},
            "validations": len(curve),
            "seconds_per_validation": round(info["validation_seconds"] / len(curve), 3),
            "val_normals": len(info["val_image_names"]),
            "val_anomalies": info["val_anomalies"],
            "epochs_run": info["epochs_run"],
            "best_epoch": info["best_epoch"],
            "stop_reason": info["stop_reason"],
            "val_metrics": {k: round(100 * v, 2) for k, v in info["val_metrics"].items()},
            "val_families": {
                f: {k: round(100 * v, 2) for k, v in m.items()} for f, m in info.get("val_families", {}).items()
            },
        }
    json.dump(rows, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
