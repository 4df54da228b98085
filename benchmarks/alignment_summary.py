"""One table of every ``benchmarks/alignment.py`` result in a folder, with a sub-pixel best shift.

The integer grid can only say "the peak is at 0 or 1 px"; a half-cell offset (e.g. 3.5 px at
stride 8) would show as a peak between grid points. A quadratic surface
``m(dy, dx) = a + b dy + c dx + d dy^2 + e dx^2 + f dy dx`` is fitted by least squares to the
metric on the full grid with |dy|, |dx| <= ``--fit-radius``, and its stationary point is the
sub-pixel estimate of the offset (reported only when the surface is concave, i.e. has a peak).

    python benchmarks/alignment_summary.py benchmarks/results/alignment-2026-12-02
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np


def quadratic_peak(rows: List[Dict], metric: str, radius: int) -> Optional[Tuple[float, float]]:
    """Stationary point (dy, dx) of the least-squares quadratic over the grid within ``radius``, if a maximum."""
    pts = [r for r in rows if abs(r["dy"]) <= radius and abs(r["dx"]) <= radius]
    if len(pts) < 9:
        return None
    y = np.array([r["dy"] for r in pts], float)
    x = np.array([r["dx"] for r in pts], float)
    m = np.array([r[metric] for r in pts], float)
    design = np.stack([np.ones_like(y), y, x, y * y, x * x, y * x], axis=1)
    _, b, c, d, e, f = np.linalg.lstsq(design, m, rcond=None)[0]
    hessian = np.array([[2 * d, f], [f, 2 * e]])
    if not np.all(np.linalg.eigvalsh(hessian) < 0):
        return None
    dy, dx = np.linalg.solve(hessian, -np.array([b, c]))
    return float(dy), float(dx)


def summarise(folder: Path, fit_radius: int) -> str:
    lines = [
        f"Validation P-AUROC / AUPRO (%) of maps shifted by (dy, dx) px; sub-pixel peak: quadratic fit over |d| <= {fit_radius}.",
        "",
        "| model | val normals + anomalies | P-AUROC at 0 | best shift (gain) | AUPRO at 0 | best shift (gain) | sub-pixel peak P-AUROC | sub-pixel peak AUPRO | AUPRO at (+4, +4) / (-4, -4) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(folder.glob("*.json")):
        res = json.loads(path.read_text())
        if "rows" not in res:
            continue
        rows = res["rows"]
        by = {(r["dy"], r["dx"]): r for r in rows}
        zero = by[(0, 0)]
        cells = [res["name"], f"{res['validation']['normals']} + {res['validation']['anomalies']}"]
        for metric in ("pixel_auroc", "aupro"):
            best = res["best"][metric]
            cells.append(f"{100 * zero[metric]:.2f}")
            cells.append(f"({best['dy']}, {best['dx']}) ({100 * (best[metric] - zero[metric]):+.2f})")
        for metric in ("pixel_auroc", "aupro"):
            p = quadratic_peak(rows, metric, fit_radius)
            cells.append("no peak" if p is None else f"({p[0]:+.1f}, {p[1]:+.1f})")
        far = [by.get(k) for k in ((4, 4), (-4, -4))]
        cells.append(" / ".join("-" if r is None else f"{100 * (r['aupro'] - zero['aupro']):+.2f}" for r in far))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="folder of alignment.py results")
    parser.add_argument("--fit-radius", type=int, default=4, help="grid radius of the quadratic fit (default 4)")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    table = summarise(folder, args.fit_radius)
    (folder / "summary.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
