"""The page of one test run: one self-contained HTML file (see docs/reports.md).

Sections: metrics overall and per defect type (with recall at the threshold), a
threshold slider with the confusion counts and both rates, the score histogram, ROC /
PR / PRO curves, galleries of the worst false alarms and escapes, the run's parameters,
data, versions and machine, and the per-image scores. The slider runs a few lines of
plain JavaScript over the image scores embedded in the page; everything else is
static. ``render_run_page`` takes the view built by ``engine.report.run_view``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Mapping, Union

from . import plots
from .html import esc, fmt, image_data_uri, json_script, page, pct, relative_link, table

#: Columns of the metrics table: (key, header).
METRIC_COLUMNS = (
    ("image_auroc", "I-AUROC"),
    ("pixel_auroc", "P-AUROC"),
    ("aupro", "AUPRO"),
    ("pixel_ap", "Pixel AP"),
    ("image_f1_max", "Image F1-max"),
    ("pixel_f1_max", "Pixel F1-max"),
)

#: Parameter groups shown in the "Run" section, in order: (key in params, heading).
PARAM_GROUPS = (
    ("model", "Model"),
    ("training", "Training"),
    ("data", "Data"),
    ("timing", "Timing"),
    ("versions", "Versions"),
)

_SCRIPT = r"""
(function () {
  var d = JSON.parse(document.getElementById("run-data").textContent);
  var slider = document.getElementById("threshold-slider");
  var out = document.getElementById("threshold-value");
  var marker = document.getElementById("histogram-marker");
  var rows = document.querySelectorAll("#per-image-table tr[data-i]");
  var recallCells = document.querySelectorAll("[data-recall-type]");
  var n = d.scores.length, last = d.positions.length - 1;
  function pct(a, b) { return b > 0 ? (100 * a / b).toFixed(1) + " %" : "-"; }
  function set(id, text) { document.getElementById(id).textContent = text; }
  function update() {
    var k = Number(slider.value), t = d.positions[k];
    var tp = 0, fn = 0, fp = 0, tn = 0, hit = {}, all = {};
    for (var i = 0; i < n; i++) {
      var flagged = d.scores[i] >= t;
      if (d.labels[i] === 1) {
        if (flagged) { tp++; } else { fn++; }
        all[d.types[i]] = (all[d.types[i]] || 0) + 1;
        hit[d.types[i]] = (hit[d.types[i]] || 0) + (flagged ? 1 : 0);
      } else if (flagged) { fp++; } else { tn++; }
      if (rows[i]) { rows[i].classList.toggle("flagged", flagged); rows[i].cells[4].textContent = flagged ? "flagged" : "passed"; }
    }
    out.textContent = k === last ? "above every score" : Number(t).toPrecision(6);
    out.setAttribute("data-threshold", String(t));
    out.setAttribute("data-index", String(k));
    set("count-tp", tp); set("count-fn", fn); set("count-fp", fp); set("count-tn", tn);
    set("rate-escape", pct(fn, tp + fn)); set("rate-false-alarm", pct(fp, fp + tn));
    set("threshold-kind", k === d.start ? d.start_label : "moved by you (" + (t > d.positions[d.start] ? "higher" : "lower") + " than the start)");
    recallCells.forEach(function (c) {
      var ty = c.getAttribute("data-recall-type");
      c.textContent = ty === "" ? pct(tp, tp + fn) : pct(hit[ty] || 0, all[ty] || 0);
    });
    if (marker) {
      var g = d.histogram, x = Math.min(Math.max(t, g.xmin), g.xmax);
      marker.style.left = (100 * (g.x0 + (x - g.xmin) / (g.xmax - g.xmin) * (g.x1 - g.x0))) + "%";
      marker.style.top = (100 * g.y0) + "%";
      marker.style.height = (100 * (g.y1 - g.y0)) + "%";
    }
  }
  slider.addEventListener("input", update);
  document.getElementById("threshold-reset").addEventListener("click", function () { slider.value = d.start; update(); });
  update();
})();
"""


def _metrics_section(view: Mapping[str, Any]) -> str:
    thr_name = "Recall at the threshold"
    header = ["", "images"] + [h for _, h in METRIC_COLUMNS] + [thr_name]
    parts = [f'<table id="metrics-table"><tr>{"".join(f"<th>{esc(h)}</th>" for h in header)}</tr>']
    for k, row in enumerate(view["metric_rows"]):
        cells = [f"<td>{esc(row['name'])}</td>", f'<td class="num">{row.get("n_images", "-")}</td>']
        cells += [f'<td class="num">{esc(pct(row.get(key)))}</td>' for key, _ in METRIC_COLUMNS]
        rtype = "" if k == 0 else row["name"]
        cells.append(f'<td class="num" data-recall-type="{esc(rtype)}">{esc(pct(row.get("recall")))}</td>')
        parts.append(('<tr style="font-weight:600">' if k == 0 else "<tr>") + "".join(cells) + "</tr>")
    good = view["good_row"]
    parts.append(
        f'<tr><td>good</td><td class="num">{good["n_images"]}</td>'
        f'<td colspan="{len(METRIC_COLUMNS)}" class="note">false-alarm rate at the threshold: '
        f"{esc(pct(good.get('false_alarm_rate')))}</td><td></td></tr></table>"
    )
    parts.append(
        '<p class="note">Fractions as percentages. The first row is the whole test set; each defect type is '
        "scored against all good test images. AUPRO integrates up to a pixel false-positive rate of 0.3. The "
        "F1-max values use the best threshold on this test set: they describe the result, they are not "
        "thresholds to deploy. Recall is the share of defective images flagged (score &ge; threshold) and "
        "follows the slider below.</p>"
    )
    return '<section id="metrics"><h2>Metrics</h2>' + "".join(parts) + "</section>"


def _threshold_section(view: Mapping[str, Any], histogram_svg: str) -> str:
    thr = view["threshold"]
    origin_class = "info" if thr.get("origin") == "model" else "warn"
    c = view["confusion"]
    positions = view["positions"]
    start = view["start_index"]
    return f"""<section id="threshold"><h2>Threshold</h2>
<p class="{origin_class}" id="threshold-origin">{esc(thr["text"])} Start: {esc(fmt(thr["image"], 6))}.</p>
<div class="slider-row"><label for="threshold-slider">threshold</label>
<input type="range" id="threshold-slider" min="0" max="{len(positions) - 1}" step="1" value="{start}"
 aria-label="image score threshold">
<output id="threshold-value" for="threshold-slider" data-threshold="{positions[start]!r}">{esc(fmt(positions[start], 6))}</output>
<button type="button" id="threshold-reset">back to the start</button>
<span class="note" id="threshold-kind"></span></div>
<p class="note">An image is flagged as defective when its score is at or above the threshold. The slider steps
through every observed score (and one above them all).</p>
<table class="confusion" id="confusion"><tr><th></th><th>passed (score &lt; threshold)</th><th>flagged (score &ge; threshold)</th></tr>
<tr><th>good ({c["tn"] + c["fp"]})</th><td class="ok"><span class="big" id="count-tn">{c["tn"]}</span> passed</td>
<td class="bad"><span class="big" id="count-fp">{c["fp"]}</span> false alarms</td></tr>
<tr><th>defective ({c["tp"] + c["fn"]})</th><td class="bad"><span class="big" id="count-fn">{c["fn"]}</span> escapes</td>
<td class="ok"><span class="big" id="count-tp">{c["tp"]}</span> caught</td></tr></table>
<div class="rates"><div>escape rate <b id="rate-escape">{esc(pct(c["fn"] / max(1, c["tp"] + c["fn"])))}</b>
<span class="note">(escapes / defective)</span></div>
<div>false-alarm rate <b id="rate-false-alarm">{esc(pct(c["fp"] / max(1, c["fp"] + c["tn"])))}</b>
<span class="note">(false alarms / good)</span></div></div>
<figure class="plot" id="plot-histogram">{histogram_svg}<div class="marker" id="histogram-marker"><span>slider</span></div></figure>
<p class="note">Dashed line: the start threshold; solid marker: the slider.</p>
</section>"""


def _curves_section(view: Mapping[str, Any]) -> str:
    m = view["metrics"]
    ic = view["image_curves"]
    pc = view.get("pixel_curves") or {}
    figs = [
        ("plot-roc", plots.roc_plot(ic["roc"], pc.get("roc"), m.get("image_auroc"), m.get("pixel_auroc"))),
        ("plot-pr", plots.pr_plot(ic["pr"], pc.get("pr"), m.get("pixel_ap"), m.get("image_f1_max"))),
    ]
    if pc.get("pro"):
        figs.append(("plot-pro", plots.pro_plot(pc["pro"], m.get("aupro"))))
    body = "".join(f'<figure class="plot" id="{pid}">{svg}</figure>' for pid, svg in figs)
    note = (
        "Image curves are exact (one point per distinct score). Pixel curves pool every pixel of every "
        "test image with ground truth and are stored thinned (within 0.002 of the exact curve); the areas "
        "in the legends are the exact metrics."
    )
    if not pc:
        note += " This test set has no ground-truth masks: there are no pixel curves."
    return f'<section id="curves"><h2>Curves</h2><div class="plots">{body}</div><p class="note">{note}</p></section>'


def _gallery_section(view: Mapping[str, Any], base: Path) -> str:
    t0 = float(view["threshold"]["image"])
    parts = [
        '<section id="galleries"><h2>Worst cases</h2>',
        '<p class="note">Each picture: the preprocessed image, and the anomaly map over it (one colour scale '
        f"for all: {esc(fmt(view['overlay_scale'].get('vmin')))} to {esc(fmt(view['overlay_scale'].get('vmax')))}), "
        "ground-truth defects outlined in white. Chosen at the start threshold; click for the full-size file.</p>",
    ]
    for g in view["galleries"]:
        if g["id"] == "examples" and not g["items"]:
            continue
        count = "" if g["id"] == "examples" else f" ({g['n']} at the start threshold)"
        parts.append(f'<h3 id="gallery-{esc(g["id"])}">{esc(g["title"])}{esc(count)}</h3>')
        if g["note"]:
            parts.append(f'<p class="note">{esc(g["note"])}</p>')
        if not g["items"]:
            parts.append('<p class="note">None.</p>')
            continue
        parts.append(f'<div class="gallery" data-gallery="{esc(g["id"])}">')
        for it in g["items"]:
            name = Path(it["path"]).name
            gap = it["score"] - t0
            where = (
                "at the threshold" if gap == 0 else f"{fmt(abs(gap))} {'above' if gap > 0 else 'below'} the threshold"
            )
            caption = (
                f"{it['defect_type']}/{name}: score {fmt(it['score'])}, {where}: {'flagged' if gap >= 0 else 'passed'}"
            )
            if it.get("file") is None:
                parts.append(
                    f"<figure><figcaption>{esc(caption)} (overlay file missing: "
                    f"{esc(str(it.get('overlay')))})</figcaption></figure>"
                )
                continue
            href = relative_link(it["file"], base)
            parts.append(
                f'<figure><a href="{esc(href)}"><img src="{image_data_uri(it["file"])}" alt="{esc(caption)}"></a>'
                f"<figcaption>{esc(caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _flat(params: Mapping[str, Any], prefix: str = "") -> List[tuple]:
    out = []
    for k, v in params.items():
        if isinstance(v, Mapping):
            out += _flat(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", fmt(v)))
    return out


def _run_section(view: Mapping[str, Any]) -> str:
    params = view["params"]
    tables = []
    for key, heading in PARAM_GROUPS:
        if isinstance(params.get(key), Mapping) and params[key]:
            tables.append(f"<div><h3>{esc(heading)}</h3>{table(['parameter', 'value'], _flat(params[key]))}</div>")
    tables.append(
        f"<div><h3>Machine</h3>{table(['parameter', 'value'], [('machine', params.get('machine', '-')), ('run written', view.get('created', ''))])}</div>"
    )
    return f'<section id="run"><h2>Run</h2><div class="params">{"".join(tables)}</div></section>'


def _per_image_section(view: Mapping[str, Any]) -> str:
    t0 = float(view["threshold"]["image"])
    rows = [
        '<table id="per-image-table"><tr><th>image</th><th>defect type</th><th>label</th>'
        '<th class="num">score</th><th>at the threshold</th></tr>'
    ]
    for i, r in enumerate(view["rows"]):
        flagged = r["score"] >= t0
        cls = ("good " if r["label"] == 0 else "") + ("flagged" if flagged else "")
        rows.append(
            f'<tr data-i="{i}" class="{cls.strip()}"><td>{esc(r["path"])}</td><td>{esc(r["defect_type"])}</td>'
            f'<td>{"defective" if r["label"] else "good"}</td><td class="num">{esc(fmt(r["score"], 6))}</td>'
            f"<td>{'flagged' if flagged else 'passed'}</td></tr>"
        )
    rows.append("</table>")
    return (
        f'<section id="per-image"><h2>Per image</h2><details><summary>{len(view["rows"])} images '
        f"(scores also in per_image.csv)</summary>{''.join(rows)}</details></section>"
    )


def render_run_page(view: Mapping[str, Any], base: Union[str, Path]) -> str:
    """The HTML of a test run's page; ``base`` is the folder the page is written to (for links)."""
    base = Path(base)
    thr = view["threshold"]
    start_label = (
        "the model's stored threshold"
        if thr.get("origin") == "model"
        else "image F1-max on this test set (display only)"
    )
    hist_svg, geometry = plots.histogram_plot(
        view["images"]["scores"], view["images"]["labels"], float(thr["image"]), "start threshold: " + start_label
    )
    params = view["params"]
    model = params.get("model", {})
    data = params.get("data", {})
    n_good, n_bad = view["good_row"]["n_images"], view["metric_rows"][0]["n_images"]
    sub = (
        f"{model.get('method', '?')} ({model.get('backbone', '?')}, {model.get('resolution', '?')} px) on "
        f"{data.get('data', '?')}: {view['n_images']} test images, {n_good} good and {n_bad} defective"
    )
    body = "".join(
        [
            f'<header><h1>{esc(view["title"])}</h1><p class="sub">{esc(sub)}</p></header>',
            '<nav><a href="#metrics">Metrics</a><a href="#threshold">Threshold</a><a href="#curves">Curves</a>'
            '<a href="#galleries">Worst cases</a><a href="#run">Run</a><a href="#per-image">Per image</a></nav>',
            _metrics_section(view),
            _threshold_section(view, hist_svg),
            _curves_section(view),
            _gallery_section(view, base),
            _run_section(view),
            _per_image_section(view),
            json_script(
                "run-data",
                {
                    "scores": view["images"]["scores"],
                    "labels": view["images"]["labels"],
                    "types": view["images"]["types"],
                    "positions": view["positions"],
                    "start": view["start_index"],
                    "start_label": start_label,
                    "histogram": geometry,
                },
            ),
        ]
    )
    return page(view["title"], body, _SCRIPT)
