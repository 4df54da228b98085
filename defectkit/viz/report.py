"""Metrics as text, and a test run written up in Markdown (``report.md``).

The HTML page of a run is viz/run_page.py; this module holds the text forms: the
terminal table ``defectkit test`` prints and the Markdown report, which renders in a
repository or a pull request and links the overlay files by relative paths. Both
report forms are built from the same view (``engine.report.run_view``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, List, Mapping, Sequence, Tuple, Union

#: Display names of the protocol metrics (docs/protocol.md), in table order.
METRIC_LABELS = {
    "image_auroc": "I-AUROC",
    "pixel_auroc": "P-AUROC",
    "aupro": "AUPRO (FPR <= 0.3)",
    "pixel_ap": "Pixel AP",
    "image_f1_max": "Image F1-max",
    "image_f1_threshold": "Image F1-max threshold",
    "pixel_f1_max": "Pixel F1-max",
    "pixel_f1_threshold": "Pixel F1-max threshold",
}


def format_value(value: Any) -> str:
    """Short human form of a parameter value: floats to 4 significant digits."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def metric_rows(metrics: Mapping[str, Any]) -> List[Tuple[str, str]]:
    """(label, text) pairs: fractions shown as percentages, thresholds in score units."""
    keys = [k for k in METRIC_LABELS if k in metrics] + [k for k in metrics if k not in METRIC_LABELS]
    out = []
    for k in keys:
        v = metrics[k]
        label = METRIC_LABELS.get(k, k)
        if k.endswith("_threshold") or k not in METRIC_LABELS or not isinstance(v, (int, float)):
            out.append((label, format_value(v)))
        else:
            out.append((label, "nan" if math.isnan(v) else f"{100.0 * v:.1f} %"))
    return out


def metrics_text_table(metrics: Mapping[str, Any]) -> str:
    """Plain two-column table for a terminal."""
    rows = metric_rows(metrics)
    width = max(len(label) for label, _ in rows) if rows else 0
    return "\n".join(f"{label:<{width}}  {text:>10}" for label, text in rows)


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> List[Tuple[str, str]]:
    """Nested dicts -> ("a.b", text) rows, in insertion order."""
    out: List[Tuple[str, str]] = []
    for k, v in params.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.extend(flatten_params(v, name + "."))
        else:
            out.append((name, format_value(v)))
    return out


def _md_cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> List[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def _pct(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100.0 * float(v):.1f} %"


def markdown_report(view: Mapping[str, Any], base: Union[str, Path]) -> str:
    """``report.md`` of a test run: metrics per defect type, the threshold and its counts,
    links to the worst cases, parameters and per-image scores. ``base``: the folder
    the file is written to (overlay links are relative to it)."""
    from .html import relative_link
    from .run_page import METRIC_COLUMNS

    thr = view["threshold"]
    c = view["confusion"]
    lines = [f"# {view['title']}", "", "## Metrics", ""]
    header = ["", "images"] + [h for _, h in METRIC_COLUMNS] + ["recall at the threshold"]
    rows = [
        [r["name"], r.get("n_images", "-")] + [_pct(r.get(k)) for k, _ in METRIC_COLUMNS] + [_pct(r.get("recall"))]
        for r in view["metric_rows"]
    ]
    good = view["good_row"]
    rows.append(
        ["good", good["n_images"]]
        + [""] * len(METRIC_COLUMNS)
        + [f"false-alarm rate {_pct(good.get('false_alarm_rate'))}"]
    )
    lines += _md_table(header, rows)
    lines += [
        "",
        "Fractions shown as percentages; each defect type is scored against all good test images. "
        "The F1-max values use the best threshold on this test set: they describe the result and are "
        "not thresholds to deploy.",
        "",
        "## Threshold",
        "",
        f"{thr['text']} Threshold: {format_value(thr['image'])}.",
        "",
    ]
    lines += _md_table(
        ["", "passed", "flagged"],
        [
            [f"good ({c['tn'] + c['fp']})", f"{c['tn']} passed", f"{c['fp']} false alarms"],
            [f"defective ({c['tp'] + c['fn']})", f"{c['fn']} escapes", f"{c['tp']} caught"],
        ],
    )
    lines += ["", "The HTML page (report.html) has a slider that moves the threshold over the observed scores.", ""]
    for g in view["galleries"]:
        if not g["items"]:
            continue
        lines += [f"## {g['title']}", ""] + ([g["note"], ""] if g["note"] else [])
        for it in g["items"]:
            caption = f"{it['defect_type']}/{Path(it['path']).name}: score {format_value(it['score'])}"
            if it.get("file") is not None:
                lines += [f"![{_md_cell(caption)}]({relative_link(it['file'], base)})", "", f"*{caption}*", ""]
            else:
                lines += [f"*{caption} (overlay file missing)*", ""]
    params = {k: v for k, v in view["params"].items() if k != "fit_info"}
    lines += ["## Parameters", ""] + _md_table(["parameter", "value"], flatten_params(params)) + [""]
    lines += (
        ["## Per image", ""]
        + _md_table(
            ["path", "defect_type", "label", "score"],
            ([r["path"], r["defect_type"], r["label"], format_value(r["score"])] for r in view["rows"]),
        )
        + [""]
    )
    return "\n".join(lines)
