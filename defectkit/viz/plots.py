"""Report plots drawn with matplotlib, returned as SVG text to inline in a page.

Why SVG: a page with the plots inline needs no image files and no network, stays sharp
when zoomed and is small (text stays text: ``svg.fonttype`` "none"). Figures are made
with the object API (``Figure`` + the SVG canvas), never pyplot, so no global figure
state and no GUI backend is touched. Each plot gets its own ``svg.hashsalt`` so the
element ids of several plots inlined in one page do not collide (every id is also prefixed
with the plot's name).
"""

from __future__ import annotations

import io
import re
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

#: Colours of the two classes (colour-blind safe pair) and of the threshold line.
GOOD_COLOUR = "#1f77b4"
DEFECT_COLOUR = "#d62728"
PIXEL_COLOUR = "#ff7f0e"
THRESHOLD_COLOUR = "#222222"
FIGSIZE = (4.6, 3.5)


def _figure(figsize=FIGSIZE):
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    return fig, fig.add_subplot(1, 1, 1)


def _svg(fig, salt: str) -> str:
    """The figure as an SVG element (no XML prolog), ids unique to ``salt``."""
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    FigureCanvasSVG(fig)
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"defectkit-{salt}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    start = text.find("<svg")
    if start < 0:
        raise RuntimeError("matplotlib wrote no <svg> element")
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text[start:], count=1, flags=re.S)
    # One id namespace per plot: every id and every reference to one gets the plot's prefix.
    text = re.sub(r'\bid="', f'id="{salt}-', text)
    text = text.replace("url(#", f"url(#{salt}-")
    return re.sub(r'\bhref="#', f'href="#{salt}-', text)  # xlink:href and href


def _axes_fraction(fig, ax) -> Dict[str, float]:
    """Where the axes sit in the figure, as fractions (x0, x1 from the left; y0, y1 from the top)."""
    fig.draw_without_rendering()  # runs the constrained layout, as savefig will
    box = ax.get_position()
    return {"x0": float(box.x0), "x1": float(box.x1), "y0": float(1.0 - box.y1), "y1": float(1.0 - box.y0)}


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)


def roc_plot(
    image: Mapping[str, Sequence[float]],
    pixel: Optional[Mapping[str, Sequence[float]]] = None,
    image_auc: Optional[float] = None,
    pixel_auc: Optional[float] = None,
) -> str:
    """ROC curves: image (exact) and, when given, pixel (pooled); areas in the legend."""
    fig, ax = _figure()
    ax.plot(
        image["fpr"],
        image["tpr"],
        color=DEFECT_COLOUR,
        lw=1.8,
        drawstyle="default",
        label="image" + (f" (I-AUROC {100 * image_auc:.1f} %)" if image_auc is not None else ""),
    )
    if pixel:
        ax.plot(
            pixel["fpr"],
            pixel["tpr"],
            color=PIXEL_COLOUR,
            lw=1.5,
            label="pixel" + (f" (P-AUROC {100 * pixel_auc:.1f} %)" if pixel_auc is not None else ""),
        )
    ax.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls=":")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.legend(loc="lower right", fontsize=8)
    _finish(ax, "false-positive rate", "true-positive rate", "ROC")
    return _svg(fig, "roc")


def pr_plot(
    image: Mapping[str, Sequence[float]],
    pixel: Optional[Mapping[str, Sequence[float]]] = None,
    pixel_ap: Optional[float] = None,
    image_f1: Optional[float] = None,
) -> str:
    """Precision-recall curves: image (steps, exact) and, when given, pixel (pooled)."""
    fig, ax = _figure()
    ax.plot(
        image["recall"],
        image["precision"],
        color=DEFECT_COLOUR,
        lw=1.8,
        drawstyle="steps-pre",
        label="image" + (f" (F1-max {100 * image_f1:.1f} %)" if image_f1 is not None else ""),
    )
    if pixel:
        ax.plot(
            pixel["recall"],
            pixel["precision"],
            color=PIXEL_COLOUR,
            lw=1.5,
            label="pixel" + (f" (AP {100 * pixel_ap:.1f} %)" if pixel_ap is not None else ""),
        )
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.legend(loc="lower left", fontsize=8)
    _finish(ax, "recall", "precision", "Precision-recall")
    return _svg(fig, "pr")


def pro_plot(pro: Mapping[str, Sequence[float]], aupro: Optional[float] = None, fpr_limit: float = 0.3) -> str:
    """The per-region-overlap curve; the part AUPRO integrates (FPR <= limit) is shaded."""
    fig, ax = _figure()
    x = np.asarray(pro["fpr"], dtype=float)
    y = np.asarray(pro["pro"], dtype=float)
    ax.plot(
        x, y, color=PIXEL_COLOUR, lw=1.6, label="PRO" + (f" (AUPRO {100 * aupro:.1f} %)" if aupro is not None else "")
    )
    inside = x <= fpr_limit
    if inside.any():
        xi = np.append(x[inside], fpr_limit)
        yi = np.append(y[inside], np.interp(fpr_limit, x, y))
        ax.fill_between(xi, yi, color=PIXEL_COLOUR, alpha=0.18, lw=0, label=f"integrated (FPR <= {fpr_limit:g})")
    ax.axvline(fpr_limit, color="#777777", lw=0.8, ls="--")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.legend(loc="lower right", fontsize=8)
    _finish(ax, "false-positive rate (pixels)", "per-region overlap", "PRO")
    return _svg(fig, "pro")


def histogram_plot(
    scores: Sequence[float], labels: Sequence[int], threshold: float, threshold_label: str, bins: int = 40
) -> Tuple[str, Dict[str, Any]]:
    """Score histogram, good vs defective, with the threshold drawn.

    -> (svg, geometry): ``geometry`` holds the axes' place in the figure (fractions) and
    its x limits, so a page can draw a moving threshold marker over the plot.
    """
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=int)
    lo, hi = float(min(s.min(), threshold)), float(max(s.max(), threshold))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, int(bins) + 1)
    fig, ax = _figure((9.4, 3.3))
    ax.hist(s[y == 0], bins=edges, color=GOOD_COLOUR, alpha=0.6, label=f"good ({int(np.sum(y == 0))})")
    ax.hist(s[y == 1], bins=edges, color=DEFECT_COLOUR, alpha=0.6, label=f"defective ({int(np.sum(y == 1))})")
    ax.axvline(threshold, color=THRESHOLD_COLOUR, lw=1.5, ls="--", label=threshold_label)
    pad = 0.02 * (hi - lo)
    ax.set_xlim(lo - pad, hi + pad)
    fig.legend(loc="outside upper right", ncols=3, fontsize=8, frameon=False)  # above the bars, never on them
    _finish(ax, "image score", "images", "")
    geometry = _axes_fraction(fig, ax)
    geometry.update(xmin=float(lo - pad), xmax=float(hi + pad))
    return _svg(fig, "histogram"), geometry


def bar_chart(
    groups: Sequence[str],
    series: Mapping[str, Tuple[Sequence[float], Sequence[float]]],
    ylabel: str,
    title: str,
    salt: str,
    log: bool = False,
) -> str:
    """Grouped bars with error bars: ``series`` maps a name to (means, stds), one per group."""
    fig, ax = _figure((max(4.6, 1.1 + 0.9 * len(groups) * max(1, len(series)) ** 0.5), 3.5))
    n = max(1, len(series))
    width = 0.8 / n
    xs = np.arange(len(groups), dtype=float)
    for k, (name, (means, stds)) in enumerate(series.items()):
        m = np.asarray([np.nan if v is None else v for v in means], dtype=float)
        e = np.asarray([0.0 if v is None or not np.isfinite(v) else v for v in stds], dtype=float)
        ax.bar(xs + (k - (n - 1) / 2) * width, np.nan_to_num(m), width * 0.95, yerr=e, capsize=2, label=name)
    ax.set_xticks(xs, list(groups), rotation=20 if len(groups) > 3 else 0, ha="right" if len(groups) > 3 else "center")
    if log:
        ax.set_yscale("log")
    if len(series) > 1:
        longest = max(len(name) for name in series)
        fig.legend(
            loc="outside lower center", ncols=1 if longest > 30 else min(3, len(series)), fontsize=8, frameon=False
        )
    _finish(ax, "", ylabel, title)
    return _svg(fig, re.sub(r"[^a-z0-9]+", "-", salt.lower()))
