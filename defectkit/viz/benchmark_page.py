"""The page of a benchmark: one self-contained HTML file, no script.

Methods x categories tables (mean ± std over seeds) for every protocol metric, bar
charts of training time and throughput (mean ± std over seeds, matplotlib SVG), every
run with a link to its own page where one was written, and the seeds, machine,
versions and command. ``render_benchmark_page`` takes the view built by
``engine.benchmark_page.benchmark_view``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from . import plots
from .html import esc, fmt, page

METRIC_NAMES = {
    "image_auroc": "I-AUROC",
    "pixel_auroc": "P-AUROC",
    "aupro": "AUPRO",
    "pixel_ap": "Pixel AP",
    "image_f1_max": "Image F1-max",
    "pixel_f1_max": "Pixel F1-max",
}


def _pm(mean: Any, std: Any, scale: float = 100.0, digits: int = 1) -> str:
    if mean is None or not isinstance(mean, (int, float)) or not math.isfinite(mean):
        return "-"
    s = std if isinstance(std, (int, float)) and math.isfinite(std) else 0.0
    return f"{mean * scale:.{digits}f} ± {s * scale:.{digits}f}"


def _matrix(view: Mapping[str, Any], metric: str) -> str:
    cats = view["categories"]
    head = "<tr><th>method</th>" + "".join(f'<th class="num">{esc(c)}</th>' for c in cats) + "</tr>"
    body = []
    for model in view["models"]:
        cells = []
        for c in cats:
            s = view["cells"].get(model, {}).get(c)
            text = "-" if s is None else _pm(s.get(f"{metric}_mean"), s.get(f"{metric}_std"))
            seeds = "" if s is None else f' title="seeds {esc(" ".join(str(x) for x in s["seeds"]))}"'
            cells.append(f'<td class="num"{seeds}>{esc(text)}</td>')
        body.append(f"<tr><td>{esc(model)}</td>{''.join(cells)}</tr>")
    return f'<table class="matrix" data-metric="{esc(metric)}">{head}{"".join(body)}</table>'


def _runs_table(view: Mapping[str, Any]) -> str:
    cols = ["image_auroc", "pixel_auroc", "aupro", "pixel_ap"]
    head = (
        '<tr><th>method</th><th>category</th><th class="num">seed</th>'
        + "".join(f'<th class="num">{METRIC_NAMES[c]}</th>' for c in cols)
        + '<th class="num">train s</th><th class="num">img/s</th><th>page</th></tr>'
    )
    body = []
    for r in view["runs"]:
        cells = [esc(str(r["model"])), esc(str(r["category"])), esc(str(r["seed"]))]
        for c in cols:
            v = r.get(c)
            cells.append(esc(f"{100 * float(v):.1f}") if isinstance(v, (int, float)) and math.isfinite(v) else "-")
        cells += [esc(fmt(r.get("train_seconds"))), esc(fmt(r.get("throughput_img_s")))]
        link = r.get("run_page")
        cells.append(f'<a href="{esc(link)}">run page</a>' if link else "-")
        body.append(
            "<tr>"
            + "".join(f'<td class="num">{c}</td>' if 2 <= k <= 8 else f"<td>{c}</td>" for k, c in enumerate(cells))
            + "</tr>"
        )
    return f'<table id="runs-table">{head}{"".join(body)}</table>'


def render_benchmark_page(view: Mapping[str, Any]) -> str:
    """The HTML of a benchmark's page."""
    env = view["env"]
    n_runs = len(view["runs"])
    n_models = len(view["models"])
    n_cats = len([c for c in view["categories"] if c != "mean"])
    linked = sum(1 for r in view["runs"] if r.get("run_page"))
    parts = [
        f'<header><h1>{esc(view["title"])}</h1><p class="sub">{n_runs} runs: {n_models} '
        f"method{'s' if n_models != 1 else ''} x {n_cats} categor{'ies' if n_cats != 1 else 'y'} x seeds "
        f"{esc(', '.join(str(s) for s in view['seeds']))}</p></header>",
        '<nav><a href="#tables">Methods x categories</a><a href="#costs">Training time and throughput</a>'
        '<a href="#runs">Runs</a><a href="#conditions">Conditions</a></nav>',
        '<section id="tables"><h2>Methods x categories</h2><p class="note">Mean ± sample standard deviation '
        '(ddof=1) over seeds, in percent; a single seed shows ± 0.0. The "mean" column averages over '
        "categories within each seed first. Nothing is chosen on the test set.</p>",
    ]
    parts.append('<div class="params">')
    for metric in view["metrics"]:
        parts.append(f"<div><h3>{esc(METRIC_NAMES.get(metric, metric))}</h3>{_matrix(view, metric)}</div>")
    parts.append("</div></section>")
    parts.append('<section id="costs"><h2>Training time and throughput</h2><div class="plots">')
    for ch in view["charts"]:
        svg = plots.bar_chart(ch["groups"], ch["series"], ch["ylabel"], ch["title"], ch["id"])
        parts.append(f'<figure class="plot" id="plot-{esc(ch["id"])}">{svg}</figure>')
    parts.append(
        '</div><p class="note">Bars: mean over seeds; whiskers: standard deviation. Training time is '
        "the wall time of fit, feature extraction included (see the feature_cache column of "
        "results.csv). Throughput: the model on the first 32 test images, best of 3 passes. Speeds "
        "depend on the machine and on what else ran on it.</p></section>"
    )
    parts.append(
        f'<section id="runs"><h2>Runs</h2><p class="note">{linked} of {n_runs} runs have their own page '
        "(benchmark --run-pages).</p>" + _runs_table(view) + "</section>"
    )
    cond = [
        ("seeds", ", ".join(str(s) for s in view["seeds"])),
        ("machine", env.get("machine", "-")),
        (
            "versions",
            f"defectkit {env.get('defectkit_version', '?')}, torch {env.get('torch_version', '?')}, "
            f"numpy {env.get('numpy_version', '?')}, python {env.get('python_version', '?')}",
        ),
        ("command", view.get("command") or "-"),
    ]
    parts.append(
        '<section id="conditions"><h2>Conditions</h2><table>'
        + "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in cond)
        + f'</table><p class="note">All numbers are also in results.csv, results.json and '
        f'<a href="{esc(view["summary_file"])}">{esc(view["summary_file"])}</a>.</p></section>'
    )
    return page(view["title"], "".join(parts))
