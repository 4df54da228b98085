"""The page of a test run (``report.html``, ``report.md``), built from the run's folder.

``defectkit test`` writes the run's files and then calls ``write_run_report``;
``defectkit report RUN_DIR`` calls it again later, on the saved files only
(engine/run_record.py): no model, no data set and no torch computation is needed.
Here is decided what the page holds (which threshold it starts at, which positions the
slider takes, which images the galleries show); viz/run_page.py draws it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from ..metrics import confusion_at
from ..utils.atomic import atomic_write_text
from .breakdown import recall_at
from .curves import image_curves
from .run_record import SavedRun, read_run

PathLike = Union[str, Path]

REPORT_HTML = "report.html"
REPORT_MD = "report.md"


def slider_positions(scores, start: float) -> List[float]:
    """Thresholds the slider takes: every distinct observed score, the start threshold,
    and one just above the highest score (nothing flagged), ascending."""
    s = np.asarray(scores, dtype=np.float64)
    above = float(np.nextafter(max(float(s.max()), float(start)), np.inf))
    return [float(v) for v in np.unique(np.concatenate((s, [float(start), above])))]


def threshold_text(threshold: Dict[str, Any]) -> str:
    """One sentence on where the page's threshold comes from."""
    if threshold.get("origin") == "model":
        rule = threshold.get("rule")
        if rule == "fpr" and threshold.get("fpr") is not None:
            how = (
                f"the score that {100.0 * float(threshold['fpr']):.3g} % of the held-out normal images "
                "exceed (never chosen on test data)"
            )
        elif rule == "f1":
            how = "F1-max on validation defects (never chosen on test data)"
        elif rule == "user":
            how = "set by the user"
        else:
            how = f"rule {rule!r}"
        src = f"; {threshold['source']}" if threshold.get("source") else ""
        return f"The model's stored threshold: {how}{src}."
    return (
        "The model stores no threshold. The page starts at the image F1-max threshold, which is chosen "
        "on this test set: it is for display only and is not a threshold to deploy."
    )


def _gallery(run: SavedRun, key: str, title: str, nearest_title: str, none_text: str) -> Dict[str, Any]:
    entry = run.record["overlays"].get(key) or {}
    items = []
    for it in entry.get("items", []):
        path = run.run_dir / it["overlay"] if it.get("overlay") else None
        items.append({**it, "file": path if path is not None and path.is_file() else None})
    n = int(entry.get("n", len(items)))
    nearest = bool(entry.get("nearest"))
    if nearest:
        note = none_text + " " + nearest_title
    elif n > len(items):
        note = f"The worst {len(items)} of {n}."
    else:
        note = ""
    return {"id": key.replace("_", "-"), "title": title, "n": n, "nearest": nearest, "note": note, "items": items}


def run_view(run: SavedRun) -> Dict[str, Any]:
    """Everything viz.run_page needs, from the saved files of one run."""
    rec = run.record
    labels, scores, types = run.labels, run.scores, run.defect_types
    thr = dict(rec["threshold"])
    t0 = float(thr["image"])
    positions = slider_positions(scores, t0)
    recall = recall_at(labels, scores, types, t0)
    metrics = rec["metrics"]
    overall = {
        "name": "all defect types",
        "n_images": int(np.sum(labels == 1)),
        **metrics,
        "recall": float(np.mean(scores[labels == 1] >= t0)),
    }
    per_type = [{"name": t, **m, "recall": recall.get(t)} for t, m in (rec.get("per_defect_type") or {}).items()]
    good = {"name": "good", "n_images": int(np.sum(labels == 0)), "false_alarm_rate": recall.get("good")}
    galleries = [
        _gallery(
            run,
            "false_alarms",
            "Worst false alarms",
            "The highest-scoring good images are shown instead: the closest to a false alarm.",
            "No good image is flagged at this threshold.",
        ),
        _gallery(
            run,
            "escapes",
            "Worst escapes",
            "The lowest-scoring defective images are shown instead: the closest to an escape.",
            "No defective image passes at this threshold.",
        ),
        _gallery(run, "examples", "Examples", "", ""),
    ]
    return {
        "title": rec.get("title") or "defectkit test run",
        "created": rec.get("created", ""),
        "n_images": len(run.rows),
        "metrics": metrics,
        "metric_rows": [overall] + per_type,
        "good_row": good,
        "threshold": {**thr, "text": threshold_text(thr)},
        "positions": positions,
        "start_index": positions.index(t0),
        "confusion": confusion_at(labels, scores, t0),
        "images": {
            "scores": scores.tolist(),
            "labels": labels.tolist(),
            "types": types,
            "names": [Path(r["path"]).name for r in run.rows],
        },
        "rows": run.rows,
        "image_curves": image_curves(labels, scores),
        "pixel_curves": rec.get("pixel_curves"),
        "overlay_scale": {k: rec["overlays"].get(k) for k in ("vmin", "vmax")},
        "galleries": galleries,
        "params": rec["params"],
    }


def write_run_report(
    run_dir: PathLike, html_path: Optional[PathLike] = None, markdown: bool = True, overwrite: bool = True
) -> Path:
    """Build the page of the run in ``run_dir`` and write it (default ``run_dir/report.html``,
    with ``report.md`` beside it when ``markdown``); returns the HTML path.

    With ``overwrite`` False an existing page is an error (the CLI's ``--force``).
    """
    from ..viz.report import markdown_report
    from ..viz.run_page import render_run_page

    run = read_run(run_dir)
    html_path = Path(html_path) if html_path is not None else run.run_dir / REPORT_HTML
    md_path = html_path.with_suffix(".md")
    if not overwrite:
        for p in (html_path, md_path) if markdown else (html_path,):
            if p.exists():
                raise FileExistsError(f"{p} already exists; pass --force to replace it or --out to write elsewhere")
    view = run_view(run)
    atomic_write_text(html_path, render_run_page(view, html_path.parent))
    if markdown:
        atomic_write_text(md_path, markdown_report(view, md_path.parent))
    return html_path


def write_page(folder: PathLike, out: Optional[PathLike] = None, overwrite: bool = False) -> Path:
    """Rebuild the page of a saved folder: a test run (run.json) or a benchmark (results.json)."""
    from .run_record import RUN_FILE

    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(
            f"{folder} is not a folder (expected the output folder of `defectkit test` or `defectkit benchmark`)"
        )
    if not (folder / RUN_FILE).exists() and (folder / "results.json").exists():
        from .benchmark_page import benchmark_page_from_dir

        return benchmark_page_from_dir(folder, out, overwrite)
    return write_run_report(folder, out, markdown=True, overwrite=overwrite)
