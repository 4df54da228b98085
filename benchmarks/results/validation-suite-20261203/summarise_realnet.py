"""Validation-suite numbers of the RealNet head runs, read from the model files' fit_info (no test image).

python benchmarks/results/validation-suite-20261203/summarise_realnet.py WORKDIR > realnet.md
"""

import json
import re
import sys
from pathlib import Path

import numpy as np

from defectkit.models import load_model

METRICS = ("image_auroc", "pixel_auroc", "aupro", "score")
work = Path(sys.argv[1])
rows = []
for path in sorted(work.glob("*.pt")):
    cat, seed, head = re.match(r"(.+)-s(\d+)-(\w+)\.pt", path.name).groups()
    info = load_model(path, device="cpu").fit_info_
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", Path(str(path) + ".time").read_text())
    rows.append(
        dict(
            category=cat,
            seed=int(seed),
            head=head,
            best_epoch=info["best_epoch"],
            train_seconds=round(info["train_seconds"], 1),
            validation_seconds=round(info["validation_seconds"], 1),
            peak_rss_mib=int(rss.group(1)) // 1024 if rss else None,
            val=info["val_metrics"],
            val_families=info["val_families"],
            val_suite=info["val_suite"],
            curve=[c.get("score") for c in info["curve"]],
        )
    )
Path(work / "realnet_rows.json").write_text(json.dumps(rows, indent=1))


def pct(v):
    return f"{100 * v:.2f}"


print(
    "| category | seed | head | kept epoch | val I-AUROC | val P-AUROC | val AUPRO | val score | train s | val s | peak RSS MiB |"
)
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(
        f"| {r['category']} | {r['seed']} | {r['head']} | {r['best_epoch']} | "
        + " | ".join(pct(r["val"][m]) for m in METRICS)
        + f" | {r['train_seconds']} | {r['validation_seconds']} | {r['peak_rss_mib']} |"
    )
print()
print("Seed means (± std over seeds), per head and category:")
print()
print("| category | head | seeds | val I-AUROC | val P-AUROC | val AUPRO | val score |")
print("|---|---|---|---|---|---|---|")
for cat in sorted({r["category"] for r in rows}):
    for head in ("conv", "mlp"):
        mine = [r for r in rows if r["category"] == cat and r["head"] == head]
        if not mine:
            continue
        cells = []
        for m in METRICS:
            v = 100 * np.array([r["val"][m] for r in mine])
            cells.append(f"{v.mean():.2f} ± {v.std(ddof=1) if len(v) > 1 else 0:.2f}")
        print(f"| {cat} | {head} | {','.join(str(r['seed']) for r in mine)} | " + " | ".join(cells) + " |")
print()
print("Per family at the kept epoch, seed mean of the score (mean of I-AUROC, P-AUROC, AUPRO), conv / mlp:")
print()
fams = sorted({f for r in rows for f in r["val_families"]})
print("| category | " + " | ".join(fams) + " |")
print("|---|" + "---|" * len(fams))
for cat in sorted({r["category"] for r in rows}):
    cells = []
    for f in fams:
        vals = {
            h: [
                100 * r["val_families"][f]["score"]
                for r in rows
                if r["category"] == cat and r["head"] == h and f in r["val_families"]
            ]
            for h in ("conv", "mlp")
        }
        cells.append(" / ".join(f"{np.mean(v):.2f}" if v else "-" for v in vals.values()))
    print(f"| {cat} | " + " | ".join(cells) + " |")
