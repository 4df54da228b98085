"""Benchmarks: every method x category x seed, fitted and scored the same way, written down.

Why this module: docs/PROTOCOL.md asks for one results row per (method, backbone,
category, seed) with all metrics, sizes, timing, memory and versions, and for
mean +- std over seeds. Doing that in one place keeps the methods comparable:
the same data split (train/good only), the same ``evaluate_model``, the same
timing. Results are written after every run (an interrupted benchmark keeps what it
finished) and an existing ``results.csv`` is never replaced unless asked.

A method spec may carry parameters, ``prn[use_msa=False,use_mf=False]``, so one
benchmark holds a whole ablation table (column ``variant``). Supervised methods (PRN)
can be given seen anomalies: ``seen_anomalies=N`` moves N defective test images into
training by a seeded draw and evaluates on the reduced test set (PROTOCOL.md).
"""

from __future__ import annotations

import csv
import datetime as _dt
import inspect
import json
import ast
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm.auto import tqdm

from .data.folder import is_mvtec3d_category, load_dataset
from .data.mvtec import is_mvtec_category
from .data.seen_anomalies import draw_seen_anomalies, seen_file_names, seen_from_folder
from .atomic import atomic_write_text
from .data.batches import load_images
from .evaluation import environment_info, evaluate_model, peak_rss_mb, throughput_pair
from .models.base import available_methods, method_class

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
def parse_value(text: str) -> Any:
    """A parameter value: a Python literal if it parses (``0.05``, ``(8, 16)``), true/false/none
    in any case as True/False/None, otherwise the text itself (``torch``)."""
    text = text.strip()
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _split_top_level(text: str) -> List[str]:
    """Split at commas that are not inside brackets or quotes (``strides=(8,16),k=3`` -> 2 items)."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [t for t in (x.strip() for x in items) if t]


_SPEC = re.compile(r"^\s*([^\[\]\s]+)\s*(?:\[(.*)\])?\s*$", re.DOTALL)


def parse_method_spec(spec: str) -> Tuple[str, Dict[str, Any]]:
    """``"prn[use_msa=False,use_mf=False]"`` -> ``("prn", {"use_msa": False, "use_mf": False})``.

    A plain name has no parameters. Values follow :func:`parse_value`. Only the syntax
    is checked here; :func:`resolve_variants` checks names and keys.
    """
    match = _SPEC.match(spec)
    if not match:
        raise ValueError(f"bad method spec {spec!r}: expected NAME or NAME[key=value,...]")
    name, inner = match.group(1), match.group(2)
    params: Dict[str, Any] = {}
    for item in _split_top_level(inner or ""):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"bad method spec {spec!r}: expected key=value, got {item!r}")
        if key in params:
            raise ValueError(f"bad method spec {spec!r}: {key!r} given twice")
        params[key] = parse_value(value)
    return name, params


def accepts_seen(method: str) -> bool:
    """Whether ``method``'s fit takes seen anomalies (``fit(train, progress, seen=...)``)."""
    return "seen" in inspect.signature(method_class(method).fit).parameters


def supervised_methods() -> List[str]:
    return [m for m in available_methods() if accepts_seen(m)]

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


def variant_params(spec: str, method_params: Optional[Mapping[str, Any]] = None,
                   methods: Sequence[str] = ()) -> Tuple[str, Dict[str, Any]]:
    """(method name, constructor params) of one method spec: ``method_params`` meant for it,
    overridden by the spec's own ``[key=value]``. Unknown methods raise KeyError, unknown
    keys ValueError naming the spec."""
    name, own = parse_method_spec(spec)
    method_class(name)  # KeyError naming the available methods
    params = params_for(name, method_params, list(methods) or [name])
    try:
        params.update(params_for(name, own))
    except ValueError as exc:
        raise ValueError(f"method spec {spec.strip()!r}: {exc}") from None
    return name, params


def resolve_variants(specs: Sequence[str], method_params: Optional[Mapping[str, Any]] = None
                     ) -> List[Tuple[str, str, Dict[str, Any]]]:
    """``[(variant, method, params)]`` for method specs, duplicates dropped, all checked first."""
    variants = list(dict.fromkeys(s.strip() for s in specs))
    names = list(dict.fromkeys(parse_method_spec(v)[0] for v in variants))
    return [(v, *variant_params(v, method_params, names)) for v in variants]


def check_seen_supported(method: str, option: str = "--seen-anomalies") -> None:
    """ValueError unless ``method`` learns from seen anomalies (say which methods do)."""
    if not accepts_seen(method):
        raise ValueError(f"method {method} is unsupervised; {option} applies to: "
                         f"{', '.join(supervised_methods()) or 'no installed method'}")


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


def _seen_and_test(dataset, seed: int, seen_anomalies: int, seen_dir: Optional[PathLike]):
    """(seen Samples or None, test Samples): a seeded draw removed from the test set, a
    folder of the user's defects (test set unchanged), or neither."""
    if seen_anomalies and seen_dir is not None:
        raise ValueError("give seen_anomalies (a draw from the test set) or seen_dir (a folder), not both")
    if seen_dir is not None:
        return seen_from_folder(seen_dir), list(dataset.test)
    if seen_anomalies:
        return draw_seen_anomalies(dataset, int(seen_anomalies), int(seed))
    return None, list(dataset.test)


def run_one(method, dataset, data_path, backbone, seed, *, weights, image_size, crop_size, device, batch_size,
            cache_dir, use_cache, method_params, methods, progress, env, seen_anomalies: int = 0,
            seen_dir: Optional[PathLike] = None) -> Dict[str, Any]:
    """Fit one model on ``dataset.train`` (plus seen anomalies) and score it on the test set -> one row.

    ``method`` is a method spec (``prn`` or ``prn[use_mf=False]``); ``methods`` are the
    method names of the whole benchmark (to check ``method_params``). With seen
    anomalies drawn from the test set, evaluation and throughput use the reduced test set.
    """
    variant = method.strip()
    name, params = variant_params(variant, method_params, methods)
    seen, test = _seen_and_test(dataset, seed, seen_anomalies, seen_dir)
    if seen is not None:
        check_seen_supported(name, "--seen-dir" if seen_dir is not None else "--seen-anomalies")
    model = method_class(name)(
        backbone=backbone, weights=weights, image_size=image_size, crop_size=crop_size, device=device,
        seed=seed, batch_size=batch_size, cache_dir=cache_dir, use_cache=use_cache, **params,
    )
    t0 = time.perf_counter()
    if seen is not None:
        model.fit(dataset.train, progress=progress, seen=seen)
    else:
        model.fit(dataset.train, progress=progress)
    train_seconds = time.perf_counter() - t0  # wall, feature extraction included
    result = evaluate_model(model, test, progress=progress)
    speed = throughput_pair(model, load_images(test[:THROUGHPUT_IMAGES], model.preprocess)[0])
    m = result.metrics
    nan = float("nan")
    row: Dict[str, Any] = {
        "method": name,
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
        "variant": variant,
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
        "seen_anomalies": len(seen or []),
        "seen_files": json.dumps(seen_file_names(seen or [])),
        "seen_dir": "" if seen_dir is None else str(seen_dir),
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
    seen_anomalies: int = 0,
    seen_dir: Optional[PathLike] = None,
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

    ``methods`` are method specs: ``name`` or ``name[key=value,...]``; a spec's values
    override ``method_params`` for that variant, and each row keeps the base name in
    ``method`` and the spec in ``variant`` (summaries group by variant).
    ``seen_anomalies=N`` (supervised methods only): per category and seed, N defective
    test images are drawn (seeded, spread over defect types), given to ``fit(...,
    seen=...)`` and removed from the test set, so every metric is on the reduced test
    set; the names go to column ``seen_files`` and to ``seen_anomalies.json``.
    ``seen_dir``: the user's own annotated defects instead (test set unchanged).
    """
    seeds = [int(s) for s in seeds]
    if not list(methods):
        raise ValueError("no methods given")
    if not seeds:
        raise ValueError("no seeds given")
    variants = resolve_variants(methods, method_params)  # KeyError / ValueError before any run
    names = list(dict.fromkeys(name for _, name, _ in variants))
    seen_anomalies = int(seen_anomalies or 0)
    if seen_anomalies < 0:
        raise ValueError(f"the number of seen anomalies must be >= 0, got {seen_anomalies}")
    if seen_anomalies and seen_dir is not None:
        raise ValueError("give seen_anomalies (a draw from the test set) or seen_dir (a folder), not both")
    if seen_anomalies or seen_dir is not None:
        for name in names:
            check_seen_supported(name, "--seen-dir" if seen_dir is not None else "--seen-anomalies")
    if seen_dir is not None:
        seen_from_folder(seen_dir)  # layout errors now, not after a first run
    categories = resolve_categories(data_paths)
    if not categories:
        raise ValueError("no data folders given")
    datasets = [(p, load_dataset(p)) for p in categories]
    if seen_anomalies:
        for _, ds in datasets:
            for seed in seeds:
                draw_seen_anomalies(ds, seen_anomalies, seed)  # too few defects with masks: fail now
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
    runs = [(v, p, ds, s) for v, _, _ in variants for p, ds in datasets for s in seeds]
    bar = tqdm(runs, desc="benchmark", unit="run", disable=not progress)
    for variant, path, ds, seed in bar:
        bar.set_postfix_str(f"{variant} {ds.name} seed {seed}")
        rows.append(
            run_one(
                variant, ds, path, backbone, seed, weights=weights, image_size=image_size, crop_size=crop_size,
                device=device, batch_size=batch_size, cache_dir=cache_dir, use_cache=use_cache,
                method_params=method_params, methods=names, progress=progress, env=env,
                seen_anomalies=seen_anomalies, seen_dir=seen_dir,
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
    seeds (seeds present in every category only).
    """
    groups: Dict[Tuple[str, str, str], List[Mapping[str, Any]]] = {}
    method_of: Dict[str, str] = {}
    for r in rows:
        groups.setdefault((_variant(r), str(r["backbone"]), str(r["category"])), []).append(r)
        method_of.setdefault(_variant(r), str(r["method"]))
    names = SUMMARY_METRICS + SUMMARY_COSTS

    def summary_row(variant, backbone, category, seeds, values_by_name) -> Dict[str, Any]:
        row: Dict[str, Any] = {
            "method": method_of[variant], "variant": variant, "backbone": backbone, "category": category,
            "seeds": sorted(seeds), "n_seeds": len(seeds),
        }
        for n in names:
            row[f"{n}_mean"], row[f"{n}_std"] = _mean_std(values_by_name[n])
        return row

    out: List[Dict[str, Any]] = []
    by_model: Dict[Tuple[str, str], List[str]] = {}
    for (variant, backbone, category), rs in groups.items():
        by_model.setdefault((variant, backbone), []).append(category)
        out.append(summary_row(variant, backbone, category, [int(r["seed"]) for r in rs],
                               {n: _finite(r.get(n) for r in rs) for n in names}))
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
    header = ["method", "backbone", "category", "seeds", "I-AUROC", "P-AUROC", "AUPRO", "P-AP",
              "I-F1max", "P-F1max", "train s", "infer ms/img", "peak RSS MB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in summary:
        name = str(r.get("variant") or r["method"]).replace("|", "\\|")
        cells = [name, str(r["backbone"]), str(r["category"]), " ".join(str(s) for s in r["seeds"])]
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
                json.loads(files) if isinstance(files, str) else list(files))
    return out


def _training_sentence(rows: Sequence[Mapping[str, Any]]) -> str:
    if not any(_seen_count(r) for r in rows):
        return "Models are trained on train/good only and nothing is chosen on the test set (docs/PROTOCOL.md)."
    return ("Models are trained on train/good plus the seen anomalies below (supervised protocol) and nothing "
            "is chosen on the test set (docs/PROTOCOL.md).")


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
        lines.append(f"- seen anomalies: {n} images from `{folder}`, used for training; the test set is not "
                     "reduced (file names in seen_anomalies.json)")
    return lines


def write_results(out_dir: PathLike, rows: Sequence[Mapping[str, Any]], env: Optional[Mapping[str, Any]] = None,
                  seeds: Optional[Sequence[int]] = None, command: Optional[str] = None) -> Dict[str, Path]:
    """(Re)write results.csv, results.json and summary.md in ``out_dir`` (atomically), and
    seen_anomalies.json when runs trained with seen anomalies."""
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
    seen_map = seen_files_by_category(rows)
    if seen_map:
        _atomic_write(out / "seen_anomalies.json", json.dumps(seen_map, indent=1) + "\n")
    lines = [
        "# Benchmark summary",
        "",
        format_table(summary),
        "",
        "Mean ± sample std (ddof=1) over seeds; metrics in percent. " + _training_sentence(rows),
        "",
        f"- seeds: {', '.join(str(s) for s in payload['seeds'])}",
        *_seen_lines(rows),
        *(["- method column: the variant, `method[key=value,...]`; its values override --param for that "
           "variant (results.csv: columns method, variant and method_params, the full set used)"]
          if any(_variant(r) != str(r["method"]) for r in rows) else []),
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
