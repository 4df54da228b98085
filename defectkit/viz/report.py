"""A test run written up for people: ``report.md`` and a self-contained ``report.html``.

Why both: the Markdown renders in a repository or a pull request, the HTML opens in
any browser with no server and no network (inline CSS, no scripts); overlay
thumbnails are referenced by paths relative to the report, so the folder can be
moved or zipped as a whole. Every report lists the parameters that produced it
(method, backbone, image size, crop, seed, versions) next to the numbers.
"""

from __future__ import annotations

import html
import math
import os
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

Example = Union[Mapping[str, Any], Tuple[Union[str, Path], str]]


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


def _examples(examples: Iterable[Example], out_dir: Path) -> List[Tuple[str, str]]:
    """-> (relative posix path, caption); paths are made relative to the report folder."""
    out = []
    for ex in examples or ():
        if isinstance(ex, Mapping):
            path, caption = ex["image"], ex.get("caption", "")
        else:
            path, caption = ex
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(out_dir))
        out.append((Path(rel).as_posix(), str(caption)))
    return out


def _md_cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> List[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def _row_cells(row: Mapping[str, Any], columns: Sequence[str]) -> List[str]:
    return [format_value(row.get(c, "")) if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns]


def _markdown(title, metrics, rows, examples, params) -> str:
    lines = [f"# {title}", "", "## Metrics", ""]
    lines += _md_table(["metric", "value"], metric_rows(metrics))
    lines += ["", "Fractions shown as percentages. The F1-max thresholds are chosen on this test set: "
              "they describe the result and are not thresholds to deploy.", ""]
    lines += ["## Parameters", ""] + _md_table(["parameter", "value"], flatten_params(params)) + [""]
    if examples:
        lines += ["## Examples", ""]
        for rel, caption in examples:
            lines += [f"![{_md_cell(caption)}]({rel})", "", f"*{caption}*", ""]
    if rows:
        columns = list(rows[0].keys())
        lines += ["## Per image", ""] + _md_table(columns, (_row_cells(r, columns) for r in rows)) + [""]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.wrong td{background:#fde8e8}
.gallery{display:flex;flex-wrap:wrap;gap:12px}.gallery figure{margin:0;max-width:520px}
.gallery img{max-width:100%;border:1px solid #ccc;image-rendering:pixelated}
figcaption{font-size:.85em;color:#444}.note{color:#555;font-size:.9em}
"""


def _html(title, metrics, rows, examples, params) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        "<h2>Metrics</h2><table><tr><th>metric</th><th>value</th></tr>",
    ]
    parts += [f'<tr><td>{e(k)}</td><td class="num">{e(v)}</td></tr>' for k, v in metric_rows(metrics)]
    parts += [
        "</table>",
        '<p class="note">Fractions shown as percentages. The F1-max thresholds are chosen on this test '
        "set: they describe the result and are not thresholds to deploy.</p>",
        "<h2>Parameters</h2><table><tr><th>parameter</th><th>value</th></tr>",
    ]
    parts += [f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in flatten_params(params)]
    parts.append("</table>")
    if examples:
        parts.append('<h2>Examples</h2><div class="gallery">')
        for rel, caption in examples:
            parts.append(
                f'<figure><a href="{e(rel)}"><img src="{e(rel)}" alt="{e(caption)}"></a>'
                f"<figcaption>{e(caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    if rows:
        columns = list(rows[0].keys())
        parts.append(f"<h2>Per image</h2><details><summary>{len(rows)} images</summary><table><tr>")
        parts += [f"<th>{e(c)}</th>" for c in columns]
        parts.append("</tr>")
        for r in rows:
            wrong = "label" in r and "predicted_label" in r and r["label"] != r["predicted_label"]
            cells = "".join(
                f'<td class="num">{e(t)}</td>' if isinstance(r.get(c), (int, float)) else f"<td>{e(t)}</td>"
                for c, t in zip(columns, _row_cells(r, columns))
            )
            parts.append(f'<tr class="wrong">{cells}</tr>' if wrong else f"<tr>{cells}</tr>")
        parts.append("</table></details>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(
    out_dir: Union[str, Path],
    title: str,
    metrics: Mapping[str, Any],
    per_image_rows: Sequence[Mapping[str, Any]],
    examples: Iterable[Example],
    params: Mapping[str, Any],
) -> Path:
    """Write ``out_dir/report.md`` and ``out_dir/report.html``; returns the HTML path.

    ``examples``: overlay images, as ``{"image": path, "caption": text}`` dicts or
    ``(path, caption)`` pairs (paths anywhere; they are referenced relative to
    ``out_dir``). ``params``: what produced the numbers (nested dicts allowed).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ex = _examples(examples, out)
    rows = [dict(r) for r in per_image_rows]
    (out / "report.md").write_text(_markdown(title, metrics, rows, ex, params), encoding="utf-8")
    path = out / "report.html"
    path.write_text(_html(title, metrics, rows, ex, params), encoding="utf-8")
    return path
