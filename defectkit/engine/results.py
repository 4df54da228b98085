"""Benchmark results: one row per run, mean ± std over seeds, and the files that hold them.

docs/protocol.md#reporting asks for one results row per (method, backbone, category,
seed) with all metrics, sizes, timing, memory and versions, and for mean ± sample std
over seeds. ``results.csv`` gets each row as its run finishes (engine/results_stream.py),
so an interrupted benchmark keeps what it finished; ``results.json`` and ``summary.md``
are then written from it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..utils.atomic import atomic_write_text
from .environment import environment_info

PathLike = Union[str, Path]

#: The first columns of results.csv, in this order (extra columns follow).
LEADING_COLUMNS = (
    "method",
    "backbone",
    "category",
    "seed",
    "image_size",
    "image_auroc",
    "pixel_auroc",
    "aupro",
    "pixel_ap",
    "train_seconds",
    "infer_ms_per_image",
    "peak_rss_mb",
)
EXTRA_COLUMNS = (
    "variant",
    "crop_size",
    "eval_resolution",
    "image_f1_max",
    "image_f1_threshold",
    "pixel_f1_max",
    "pixel_f1_threshold",
    "throughput_img_s",
    "backbone_img_s",
    "decode_ms_per_image",
    "warmup_seconds",
    "epochs",
    "chosen_epoch",
    "n_train",
    "n_test",
    "seen_anomalies",
    "seen_files",
    "seen_dir",
    "resize",
    "tile_size",
    "tile_overlap",
    "layout",
    "group_metrics",
    "batch_size",
    "device",
    "feature_cache",
    "method_params",
    "data_path",
    "torch_version",
    "defectkit_version",
    "python_version",
    "machine",
    "timestamp",
)
#: Metrics summarised over seeds (fractions, shown as percentages).
SUMMARY_METRICS = ("image_auroc", "pixel_auroc", "aupro", "pixel_ap", "image_f1_max", "pixel_f1_max")
#: Costs summarised over seeds (shown as plain numbers).
SUMMARY_COSTS = ("train_seconds", "infer_ms_per_image", "peak_rss_mb")
#: Test images used for the model-vs-backbone throughput comparison.
THROUGHPUT_IMAGES = 32


# -------------------------------------------------------------------------- summaries
def _finite(values: Iterable[Any]) -> List[float]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


def _mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single seed); NaN if empty."""
    if not values:
        return float("nan"), float("nan")
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def _failed(row: Mapping[str, Any]) -> bool:
    """A row recording a run that raised (column ``error``) instead of finishing."""
    return bool(str(row.get("error") or "").strip())


def _variant(row: Mapping[str, Any]) -> str:
    """The method spec of a row (rows written before variants existed: the method name)."""
    return str(row.get("variant") or row["method"])


def summarise(rows: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Mean and std over seeds per (variant, backbone, category), first-seen order.

    Each summary row has method (the base name), variant (the method spec, e.g.
    ``prn[use_mf=False]``; the name itself when plain), backbone, category, seeds (sorted
    list), n_seeds and ``<name>_mean`` / ``<name>_std`` for SUMMARY_METRICS and
    SUMMARY_COSTS. The std is the sample standard deviation over seeds (numpy
    ``std(ddof=1)``). When a variant ran on several categories, a row with category
    "mean" follows: the per-seed mean over categories, then mean and std of those over
    seeds (seeds present in every category only). Rows of failed runs (non-empty
    ``error``) are left out.
    """
    rows = [r for r in rows if not _failed(r)]
    groups: Dict[Tuple[str, str, str], List[Mapping[str, Any]]] = {}
    method_of: Dict[str, str] = {}
    for r in rows:
        groups.setdefault((_variant(r), str(r["backbone"]), str(r["category"])), []).append(r)
        method_of.setdefault(_variant(r), str(r["method"]))
    names = SUMMARY_METRICS + SUMMARY_COSTS

    def summary_row(variant, backbone, category, seeds, values_by_name) -> Dict[str, Any]:
        row: Dict[str, Any] = {
            "method": method_of[variant],
            "variant": variant,
            "backbone": backbone,
            "category": category,
            "seeds": sorted(seeds),
            "n_seeds": len(seeds),
        }
        for n in names:
            row[f"{n}_mean"], row[f"{n}_std"] = _mean_std(values_by_name[n])
        return row

    out: List[Dict[str, Any]] = []
    by_model: Dict[Tuple[str, str], List[str]] = {}
    for (variant, backbone, category), rs in groups.items():
        by_model.setdefault((variant, backbone), []).append(category)
        out.append(
            summary_row(
                variant,
                backbone,
                category,
                [int(r["seed"]) for r in rs],
                {n: _finite(r.get(n) for r in rs) for n in names},
            )
        )
    for (variant, backbone), cats in by_model.items():
        if len(cats) < 2:
            continue
        per_cat = {c: {int(r["seed"]): r for r in groups[(variant, backbone, c)]} for c in cats}
        common = sorted(set.intersection(*(set(d) for d in per_cat.values())))
        values = {n: [] for n in names}
        for s in common:
            for n in names:
                v = _finite(per_cat[c][s].get(n) for c in cats)
                if len(v) == len(cats):
                    values[n].append(float(np.mean(v)))
        out.append(summary_row(variant, backbone, "mean", common, values))
    return out


def _pm(mean: float, std: float, scale: float, digits: int) -> str:
    if not math.isfinite(mean):
        return "-"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def format_table(summary: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table: metrics as percentages "99.6 ± 0.1" (mean ± std over seeds).

    The method column shows the variant (``prn[use_mf=False]``), so an ablation reads
    as one table."""
    header = [
        "method",
        "backbone",
        "category",
        "seeds",
        "I-AUROC",
        "P-AUROC",
        "AUPRO",
        "P-AP",
        "I-F1max",
        "P-F1max",
        "train s",
        "infer ms/img",
        "peak RSS MB",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in summary:
        name = str(r.get("variant") or r["method"]).replace("|", "\\|")
        cells = [name, str(r["backbone"]), str(r["category"]), " ".join(str(s) for s in r["seeds"])]
        cells += [_pm(r[f"{n}_mean"], r[f"{n}_std"], 100.0, 1) for n in SUMMARY_METRICS]
        cells += [
            _pm(r["train_seconds_mean"], r["train_seconds_std"], 1.0, 1),
            _pm(r["infer_ms_per_image_mean"], r["infer_ms_per_image_std"], 1.0, 1),
            _pm(r["peak_rss_mb_mean"], r["peak_rss_mb_std"], 1.0, 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: Metrics of the per-category tables (papers' style), with their column titles.
CATEGORY_TABLE_METRICS = (("image_auroc", "I-AUROC"), ("pixel_auroc", "P-AUROC"), ("aupro", "AUPRO"))


def format_category_tables(
    summary: Sequence[Mapping[str, Any]], metrics: Sequence[Tuple[str, str]] = CATEGORY_TABLE_METRICS
) -> str:
    """One Markdown table per metric as the papers print them: a row per category, a column
    per method (variant; with the backbone when several were run), the mean over categories
    last. Cells are "mean ± std" over seeds in percent. Empty when only one category ran."""
    categories = list(dict.fromkeys(str(r["category"]) for r in summary if str(r["category"]) != "mean"))
    if len(categories) < 2:
        return ""
    backbones = {str(r["backbone"]) for r in summary}
    columns = list(dict.fromkeys((str(r.get("variant") or r["method"]), str(r["backbone"])) for r in summary))
    cell = {(str(r.get("variant") or r["method"]), str(r["backbone"]), str(r["category"])): r for r in summary}

    def title(variant: str, backbone: str) -> str:
        name = variant.replace("|", "\\|")
        return f"{name} ({backbone})" if len(backbones) > 1 else name

    blocks = []
    for key, label in metrics:
        lines = [
            f"**{label}** (%, mean ± std over seeds)",
            "",
            "| category | " + " | ".join(title(v, b) for v, b in columns) + " |",
            "|---|" + "---|" * len(columns),
        ]
        for cat in categories + ["mean"]:
            cells = []
            for v, b in columns:
                r = cell.get((v, b, cat))
                cells.append("-" if r is None else _pm(r[f"{key}_mean"], r[f"{key}_std"], 100.0, 1))
            lines.append(f"| {'**mean**' if cat == 'mean' else cat} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


# ---------------------------------------------------------------------------- writing
def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v


def results_columns(rows: Sequence[Mapping[str, Any]]) -> List[str]:
    """LEADING_COLUMNS, then EXTRA_COLUMNS, then any other keys the rows carry."""
    cols = list(LEADING_COLUMNS) + list(EXTRA_COLUMNS)
    for r in rows:
        cols += [k for k in r if k not in cols and not k.startswith("_")]
    return cols


def _seen_count(row: Mapping[str, Any]) -> int:
    try:
        return int(row.get("seen_anomalies") or 0)
    except (TypeError, ValueError):
        return 0


def seen_files_by_category(rows: Sequence[Mapping[str, Any]]) -> Dict[str, Dict[str, List[str]]]:
    """``{category: {seed: [seen file names]}}`` of the rows that trained with seen anomalies."""
    out: Dict[str, Dict[str, List[str]]] = {}
    for r in rows:
        if _seen_count(r) > 0:
            files = r.get("seen_files") or "[]"
            out.setdefault(str(r["category"]), {})[str(int(r["seed"]))] = (
                json.loads(files) if isinstance(files, str) else list(files)
            )
    return out


def _training_sentence(rows: Sequence[Mapping[str, Any]]) -> str:
    if not any(_seen_count(r) for r in rows):
        return "Models are trained on train/good only and nothing is chosen on the test set (docs/protocol.md)."
    return (
        "Models are trained on train/good plus the seen anomalies below (supervised protocol) and nothing "
        "is chosen on the test set (docs/protocol.md)."
    )


def _seen_lines(rows: Sequence[Mapping[str, Any]]) -> List[str]:
    """What summary.md says about seen anomalies: how many, from where, which test set was scored."""
    lines = []
    drawn = sorted({_seen_count(r) for r in rows if _seen_count(r) and not r.get("seen_dir")})
    folders = sorted({(str(r["seen_dir"]), _seen_count(r)) for r in rows if _seen_count(r) and r.get("seen_dir")})
    if drawn:
        lines.append(
            f"- seen anomalies: {', '.join(map(str, drawn))} defective test images per category and seed, drawn "
            "by a seeded round-robin over the defect types, used for training and removed from the test set; "
            "**all metrics are on the reduced test set** (column n_test); file names in seen_anomalies.json"
        )
    for folder, n in folders:
        lines.append(
            f"- seen anomalies: {n} images from `{folder}`, used for training; the test set is not "
            "reduced (file names in seen_anomalies.json)"
        )
    return lines


def write_results(
    out_dir: PathLike,
    rows: Sequence[Mapping[str, Any]],
    env: Optional[Mapping[str, Any]] = None,
    seeds: Optional[Sequence[int]] = None,
    command: Optional[str] = None,
) -> Dict[str, Path]:
    """(Re)write results.csv, results.json, summary.md and benchmark.html in ``out_dir``
    (atomically), and seen_anomalies.json when runs trained with seen anomalies."""
    out = Path(out_dir)
    env = dict(env or environment_info())
    command = command if command is not None else " ".join([Path(sys.argv[0]).name] + sys.argv[1:])
    cols = results_columns(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_value(r.get(k, "")) for k in cols})
    atomic_write_text(out / "results.csv", buf.getvalue())

    summary = summarise(rows)
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    for r, full in zip(clean, rows):
        if "_fit_info" in full:
            r["fit_info"] = full["_fit_info"]
    payload = {
        "command": command,
        "environment": env,
        "seeds": list(seeds or sorted({int(r["seed"]) for r in rows})),
        "rows": clean,
        "summary": summary,
    }
    atomic_write_text(out / "results.json", json.dumps(payload, indent=1, default=str, allow_nan=True) + "\n")

    res = sorted(
        {
            (
                r["image_size"],
                r.get("crop_size", ""),
                r.get("eval_resolution", ""),
                r.get("resize") or "square",
                r.get("tile_size", ""),
                r.get("tile_overlap", ""),
            )
            for r in rows
        },
        key=str,
    )

    def _prep(s, c, e, mode, tile, overlap) -> str:
        text = f"resize {s}" + (" (aspect ratio kept, padded; padding not scored)" if mode == "keep" else "")
        text += f", crop {c}" if c not in ("", None) else ", no crop"
        if tile not in ("", None):
            text = f"tiles of {tile} px at native resolution, {overlap} px overlap, each resized to {s}; " + text
        if e not in ("", None):
            text += f", metrics at {e}x{e} px" if str(e).isdigit() else f", metrics at {e} resolution"
        return text

    sizes = "; ".join(_prep(*r) for r in res)
    per_category = format_category_tables(summary)
    caches = {bool(r.get("feature_cache")) for r in rows}
    seen_map = seen_files_by_category(rows)
    if seen_map:
        atomic_write_text(out / "seen_anomalies.json", json.dumps(seen_map, indent=1) + "\n")
    lines = [
        "# Benchmark summary",
        "",
        format_table(summary),
        "",
        *(["## Per category", "", per_category, ""] if per_category else []),
        "Mean ± sample std (ddof=1) over seeds; metrics in percent. " + _training_sentence(rows),
        "",
        f"- seeds: {', '.join(str(s) for s in payload['seeds'])}",
        *(
            [
                f"- failed runs: {sum(map(_failed, rows))} of {len(rows)}, left out of the tables (their errors are "
                "in column error of results.csv)"
            ]
            if any(map(_failed, rows))
            else []
        ),
        *_seen_lines(rows),
        *(
            [
                "- method column: the variant, `method[key=value,...]`; its values override --param for that "
                "variant (results.csv: columns method, variant and method_params, the full set used)"
            ]
            if any(_variant(r) != str(r["method"]) for r in rows)
            else []
        ),
        f"- preprocessing: {sizes}",
        f"- machine: {env.get('machine', '')}",
        f"- versions: defectkit {env.get('defectkit_version', '')}, torch {env.get('torch_version', '')}, "
        f"numpy {env.get('numpy_version', '')}, python {env.get('python_version', '')}",
        f"- command: `{command}`",
        "- train s: wall time of fit, feature extraction included"
        + (
            "; the feature cache was ON, so runs after the first reuse features and are faster"
            if True in caches
            else "; feature cache off, every run extracted its own features"
        ),
        "- infer ms/img: wall time of predict on the preprocessed test images (batches of batch_size) / "
        "number of images, after one untimed warm-up image; decoding the files is timed apart "
        "(column decode_ms_per_image)",
        f"- throughput_img_s / backbone_img_s (results.csv): model vs backbone alone on the first "
        f"{THROUGHPUT_IMAGES} test images, best of 3 passes",
        "- peak RSS MB: peak resident memory of the whole benchmark process up to the end of that run "
        "(ru_maxrss), not of the model alone; it never decreases along the runs",
        "",
    ]
    atomic_write_text(out / "summary.md", "\n".join(lines))
    from .benchmark_page import write_benchmark_page  # the page of the same rows (benchmark.html)

    page = write_benchmark_page(out, rows, env, payload["seeds"], command)
    return {"csv": out / "results.csv", "json": out / "results.json", "summary": out / "summary.md", "page": page}
