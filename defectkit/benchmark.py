"""Benchmarks: every method x category x seed, fitted and scored the same way, written down.

Why this module: docs/PROTOCOL.md asks for one results row per (method, backbone,
category, seed) with all metrics, sizes, timing, memory and versions, and for
mean +- std over seeds. Doing that in one place keeps the methods comparable:
the same data split (train/good only), the same ``evaluate_model``, the same
timing. Results are written after every run (an interrupted benchmark keeps what it
finished) and an existing ``results.csv`` is never replaced unless asked.
"""

from __future__ import annotations

import csv
import datetime as _dt
import inspect
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm.auto import tqdm

from .data.folder import is_mvtec3d_category, load_dataset
from .data.mvtec import is_mvtec_category
from .atomic import atomic_write_text
from .data.batches import load_images
from .evaluation import environment_info, evaluate_model, peak_rss_mb, throughput_pair
from .models.base import method_class

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
_BASE_PARAMS = ("backbone", "weights", "image_size", "crop_size", "device", "seed", "batch_size", "cache_dir", "use_cache")


# ------------------------------------------------------------------ method parameters
def accepted_params(method: str) -> Optional[List[str]]:
    """Constructor keywords of a method beyond the shared ones; None if it takes **kwargs."""
    params = inspect.signature(method_class(method).__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return [n for n in params if n not in ("self",) + _BASE_PARAMS]


def params_for(method: str, method_params: Optional[Mapping[str, Any]], methods: Sequence[str] = ()) -> Dict[str, Any]:
    """The part of ``method_params`` meant for ``method``.

    Keys are constructor keywords (``coreset_ratio``) or method-qualified
    (``patchcore.coreset_ratio``). A plain key goes to every method that accepts it;
    a key that none of ``methods`` accepts is an error naming what they do accept, so
    a typo never runs a whole benchmark with the default silently.
    """
    methods = list(methods) or [method]
    method_params = dict(method_params or {})
    for key in method_params:
        if key in _BASE_PARAMS:
            raise ValueError(f"parameter {key!r} has its own option (e.g. --{key.replace('_', '-')}); not a method parameter")
        target, _, name = key.rpartition(".")
        wanted = [target] if target else methods
        if target and target not in methods:
            raise ValueError(f"parameter {key!r} is for method {target!r}, which is not being run ({', '.join(methods)})")
        if not any(accepted_params(m) is None or name in accepted_params(m) for m in wanted):
            known = sorted({p for m in wanted for p in (accepted_params(m) or [])})
            raise ValueError(
                f"unknown parameter {name!r} for {', '.join(wanted)}; accepted: {', '.join(known) or 'none'}"
            )
    mine = accepted_params(method)
    out: Dict[str, Any] = {}
    for key, value in method_params.items():
        target, _, name = key.rpartition(".")
        if target and target != method:
            continue
        if mine is None or name in mine:
            out[name] = value
    return out


def build_model(method: str, method_params: Optional[Mapping[str, Any]] = None, **common: Any):
    """``method_class(method)(**common, **params)`` with parameter names checked first."""
    return method_class(method)(**common, **params_for(method, method_params))


# ------------------------------------------------------------------------- data sets
def resolve_categories(data_paths: Iterable[PathLike]) -> List[Path]:
    """Category folders from paths that are categories or data-set roots holding them
    (``mvtec_ad`` -> every category inside, sorted). Layout errors name the path."""
    out: List[Path] = []
    for p in data_paths:
        p = Path(p)
        if p.is_dir() and not (is_mvtec_category(p) or is_mvtec3d_category(p)):
            cats = sorted(d for d in p.iterdir() if d.is_dir() and (is_mvtec_category(d) or is_mvtec3d_category(d)))
            if cats:
                out.extend(cats)
                continue
        out.append(p)
    return out


# ---------------------------------------------------------------------------- running
def _fit_info_value(info: Mapping[str, Any], key: str) -> Any:
    v = info.get(key)
    return v if isinstance(v, (int, float, str)) and not isinstance(v, bool) else ""


def run_one(method, dataset, data_path, backbone, seed, *, weights, image_size, crop_size, device, batch_size,
            cache_dir, use_cache, method_params, methods, progress, env) -> Dict[str, Any]:
    """Fit one model on ``dataset.train`` and score it on ``dataset.test`` -> one results row."""
    params = params_for(method, method_params, methods)
    model = method_class(method)(
        backbone=backbone, weights=weights, image_size=image_size, crop_size=crop_size, device=device,
        seed=seed, batch_size=batch_size, cache_dir=cache_dir, use_cache=use_cache, **params,
    )
    t0 = time.perf_counter()
    model.fit(dataset.train, progress=progress)
    train_seconds = time.perf_counter() - t0  # wall, feature extraction included
    result = evaluate_model(model, dataset.test, progress=progress)
    speed = throughput_pair(model, load_images(dataset.test[:THROUGHPUT_IMAGES], model.preprocess)[0])
    m = result.metrics
    nan = float("nan")
    row: Dict[str, Any] = {
        "method": method,
        "backbone": backbone,
        "category": dataset.name,
        "seed": int(seed),
        "image_size": int(image_size),
        "image_auroc": m.get("image_auroc", nan),
        "pixel_auroc": m.get("pixel_auroc", nan),
        "aupro": m.get("aupro", nan),
        "pixel_ap": m.get("pixel_ap", nan),
        "train_seconds": train_seconds,
        "infer_ms_per_image": result.infer_ms_per_image,
        "peak_rss_mb": peak_rss_mb(),
        "crop_size": "" if crop_size is None else int(crop_size),
        "eval_resolution": result.resolution,
        "image_f1_max": m.get("image_f1_max", nan),
        "image_f1_threshold": m.get("image_f1_threshold", nan),
        "pixel_f1_max": m.get("pixel_f1_max", nan),
        "pixel_f1_threshold": m.get("pixel_f1_threshold", nan),
        "throughput_img_s": speed["model_img_s"],
        "backbone_img_s": speed["backbone_img_s"],
        "decode_ms_per_image": 1000.0 * result.timing.get("decode_seconds", nan) / max(1, result.n_images),
        "warmup_seconds": result.timing.get("warmup_seconds", nan),
        "epochs": _fit_info_value(model.fit_info_, "epochs"),
        "chosen_epoch": _fit_info_value(model.fit_info_, "chosen_epoch"),
        "n_train": len(dataset.train),
        "n_test": result.n_images,
        "batch_size": int(batch_size),
        "device": str(model.device),
        "feature_cache": bool(use_cache),
        "method_params": json.dumps(params, sort_keys=True, default=str),
        "data_path": str(data_path),
        "torch_version": env["torch_version"],
        "defectkit_version": env["defectkit_version"],
        "python_version": env["python_version"],
        "machine": env["machine"],
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    row["_fit_info"] = {k: v for k, v in model.fit_info_.items() if isinstance(v, (int, float, str, bool, list))}
    return row


def run_benchmark(
    methods: Sequence[str],
    data_paths: Sequence[PathLike],
    backbone: str = "efficientnet_lite0",
    seeds: Sequence[int] = (0, 1, 2),
    weights: Optional[str] = None,
    image_size: int = 256,
    crop_size: Optional[int] = None,
    device: str = "auto",
    out_dir: Optional[PathLike] = None,
    method_params: Optional[Mapping[str, Any]] = None,
    progress: bool = True,
    overwrite: bool = False,
    batch_size: int = 8,
    cache_dir: Optional[PathLike] = None,
    use_cache: bool = False,
    command: Optional[str] = None,
) -> List[Dict[str, Any]]:
    """Fit and evaluate every method x category x seed; returns one row dict per run.

    Metrics are fractions in [0, 1]. ``train_seconds`` is the wall time of ``fit``
    (feature extraction included); ``peak_rss_mb`` is the peak resident memory of the
    whole process up to the end of that run (``ru_maxrss``), so it never decreases
    along the rows. ``use_cache`` is off by default so that every run pays its own
    feature extraction; with it on, runs after the first reuse cached features and
    their train_seconds are not comparable (recorded in column ``feature_cache``).
    With ``out_dir``: results.csv, results.json and summary.md are (re)written after
    every run; an existing results.csv raises FileExistsError unless ``overwrite``.
    Everything (methods, parameters, data folders, output) is checked before the
    first model is fitted.
    """
    methods = list(dict.fromkeys(methods))
    seeds = [int(s) for s in seeds]
    if not methods:
        raise ValueError("no methods given")
    if not seeds:
        raise ValueError("no seeds given")
    for m in methods:
        method_class(m)  # KeyError naming the available methods
        params_for(m, method_params, methods)  # ValueError on unknown parameters
    categories = resolve_categories(data_paths)
    if not categories:
        raise ValueError("no data folders given")
    datasets = [(p, load_dataset(p)) for p in categories]
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and (out / "results.csv").exists() and not overwrite:
        raise FileExistsError(
            f"{out / 'results.csv'} already exists; choose another output folder or pass overwrite=True "
            "(CLI: --force) to replace it"
        )
    from .backbones import create_backbone

    create_backbone(backbone, weights)  # unknown backbone / bad weights fail now, not after a first run
    env = environment_info(device)
    rows: List[Dict[str, Any]] = []
    runs = [(m, p, ds, s) for m in methods for p, ds in datasets for s in seeds]
    bar = tqdm(runs, desc="benchmark", unit="run", disable=not progress)
    for method, path, ds, seed in bar:
        bar.set_postfix_str(f"{method} {ds.name} seed {seed}")
        rows.append(
            run_one(
                method, ds, path, backbone, seed, weights=weights, image_size=image_size, crop_size=crop_size,
                device=device, batch_size=batch_size, cache_dir=cache_dir, use_cache=use_cache,
                method_params=method_params, methods=methods, progress=progress, env=env,
            )
        )
        if out is not None:
            write_results(out, rows, env=env, seeds=seeds, command=command)
    bar.close()
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


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


def summarise(rows: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Mean and std over seeds per (method, backbone, category), first-seen order.

    Each summary row has method, backbone, category, seeds (sorted list), n_seeds and
    ``<name>_mean`` / ``<name>_std`` for SUMMARY_METRICS and SUMMARY_COSTS. The std is
    the sample standard deviation over seeds (numpy ``std(ddof=1)``). When a method
    ran on several categories, a row with category "mean" follows: the per-seed mean
    over categories, then mean and std of those over seeds (seeds present in every
    category only).
    """
    groups: Dict[Tuple[str, str, str], List[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((str(r["method"]), str(r["backbone"]), str(r["category"])), []).append(r)
    names = SUMMARY_METRICS + SUMMARY_COSTS

    def summary_row(method, backbone, category, seeds, values_by_name) -> Dict[str, Any]:
        row: Dict[str, Any] = {
            "method": method, "backbone": backbone, "category": category,
            "seeds": sorted(seeds), "n_seeds": len(seeds),
        }
        for n in names:
            row[f"{n}_mean"], row[f"{n}_std"] = _mean_std(values_by_name[n])
        return row

    out: List[Dict[str, Any]] = []
    by_model: Dict[Tuple[str, str], List[str]] = {}
    for (method, backbone, category), rs in groups.items():
        by_model.setdefault((method, backbone), []).append(category)
        out.append(summary_row(method, backbone, category, [int(r["seed"]) for r in rs],
                               {n: _finite(r.get(n) for r in rs) for n in names}))
    for (method, backbone), cats in by_model.items():
        if len(cats) < 2:
            continue
        per_cat = {c: {int(r["seed"]): r for r in groups[(method, backbone, c)]} for c in cats}
        common = sorted(set.intersection(*(set(d) for d in per_cat.values())))
        values = {n: [] for n in names}
        for s in common:
            for n in names:
                v = _finite(per_cat[c][s].get(n) for c in cats)
                if len(v) == len(cats):
                    values[n].append(float(np.mean(v)))
        out.append(summary_row(method, backbone, "mean", common, values))
    return out


def _pm(mean: float, std: float, scale: float, digits: int) -> str:
    if not math.isfinite(mean):
        return "-"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def format_table(summary: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table: metrics as percentages "99.6 ± 0.1" (mean ± std over seeds)."""
    header = ["method", "backbone", "category", "seeds", "I-AUROC", "P-AUROC", "AUPRO", "P-AP",
              "I-F1max", "P-F1max", "train s", "infer ms/img", "peak RSS MB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in summary:
        cells = [str(r["method"]), str(r["backbone"]), str(r["category"]), " ".join(str(s) for s in r["seeds"])]
        cells += [_pm(r[f"{n}_mean"], r[f"{n}_std"], 100.0, 1) for n in SUMMARY_METRICS]
        cells += [_pm(r["train_seconds_mean"], r["train_seconds_std"], 1.0, 1),
                  _pm(r["infer_ms_per_image_mean"], r["infer_ms_per_image_std"], 1.0, 1),
                  _pm(r["peak_rss_mb_mean"], r["peak_rss_mb_std"], 1.0, 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- writing
def _atomic_write(path: Path, text: str) -> None:
    atomic_write_text(path, text)


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


def write_results(out_dir: PathLike, rows: Sequence[Mapping[str, Any]], env: Optional[Mapping[str, Any]] = None,
                  seeds: Optional[Sequence[int]] = None, command: Optional[str] = None) -> Dict[str, Path]:
    """(Re)write results.csv, results.json and summary.md in ``out_dir`` (atomically)."""
    import io

    out = Path(out_dir)
    env = dict(env or environment_info())
    command = command if command is not None else " ".join([Path(sys.argv[0]).name] + sys.argv[1:])
    cols = results_columns(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_value(r.get(k, "")) for k in cols})
    _atomic_write(out / "results.csv", buf.getvalue())

    summary = summarise(rows)
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    for r, full in zip(clean, rows):
        if "_fit_info" in full:
            r["fit_info"] = full["_fit_info"]
    payload = {"command": command, "environment": env, "seeds": list(seeds or sorted({int(r["seed"]) for r in rows})),
               "rows": clean, "summary": summary}
    _atomic_write(out / "results.json", json.dumps(payload, indent=1, default=str, allow_nan=True) + "\n")

    res = sorted({(r["image_size"], r.get("crop_size", ""), r.get("eval_resolution", "")) for r in rows}, key=str)
    sizes = "; ".join(f"resize {s}" + (f", crop {c}" if c not in ("", None) else ", no crop") +
                      (f", metrics at {e}x{e} px" if e not in ("", None) else "") for s, c, e in res)
    caches = {bool(r.get("feature_cache")) for r in rows}
    lines = [
        "# Benchmark summary",
        "",
        format_table(summary),
        "",
        "Mean ± sample std (ddof=1) over seeds; metrics in percent. Models are trained on train/good only "
        "and nothing is chosen on the test set (docs/PROTOCOL.md).",
        "",
        f"- seeds: {', '.join(str(s) for s in payload['seeds'])}",
        f"- preprocessing: {sizes}",
        f"- machine: {env.get('machine', '')}",
        f"- versions: defectkit {env.get('defectkit_version', '')}, torch {env.get('torch_version', '')}, "
        f"numpy {env.get('numpy_version', '')}, python {env.get('python_version', '')}",
        f"- command: `{command}`",
        "- train s: wall time of fit, feature extraction included"
        + ("; the feature cache was ON, so runs after the first reuse features and are faster"
           if True in caches else "; feature cache off, every run extracted its own features"),
        "- infer ms/img: wall time of predict on the preprocessed test images (batches of batch_size) / "
        "number of images, after one untimed warm-up image; decoding the files is timed apart "
        "(column decode_ms_per_image)",
        f"- throughput_img_s / backbone_img_s (results.csv): model vs backbone alone on the first "
        f"{THROUGHPUT_IMAGES} test images, best of 3 passes",
        "- peak RSS MB: peak resident memory of the whole benchmark process up to the end of that run "
        "(ru_maxrss), not of the model alone; it never decreases along the runs",
        "",
    ]
    _atomic_write(out / "summary.md", "\n".join(lines))
    return {"csv": out / "results.csv", "json": out / "results.json", "summary": out / "summary.md"}
