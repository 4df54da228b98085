"""Benchmarks: every method x category x seed, fitted and scored the same way.

Every run trains on train/good only (plus seen anomalies for supervised methods), is
scored by the same ``evaluate_model`` and timed the same way, and becomes one results
row (``engine.results``). A method spec may carry parameters,
``prn[use_msa=False,use_mf=False]``, so one benchmark holds a whole ablation table
(column ``variant``). Supervised methods (PRN) can be given seen anomalies:
``seen_anomalies=N`` moves N defective test images into training by a seeded draw and
evaluates on the reduced test set (docs/protocol.md#seen-anomalies).
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ..data.batches import load_images
from ..data.folder import load_dataset, resolve_categories
from ..data.mask_size import check_mask_sizes
from ..data.seen_anomalies import draw_seen_anomalies, seen_file_names, seen_from_folder
from ..models.factory import build_model, check_seen_supported, resolve_variants, variant_params
from ..utils.output import check_output_dir
from ..utils.progress import progress as progress_bar
from .environment import environment_info, peak_rss_mb
from .evaluate import evaluate_model, throughput_pair
from .predict import slug
from .results import THROUGHPUT_IMAGES, write_results

PathLike = Union[str, Path]

#: Files a benchmark writes into its output folder; none is replaced without ``overwrite``.
RESULT_FILES = ("results.csv", "results.json", "summary.md", "seen_anomalies.json")


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
            seen_dir: Optional[PathLike] = None, strict: bool = False, resize: str = "square",
            tile_size: Optional[int] = None, tile_overlap: int = 32,
            run_dir: Optional[PathLike] = None) -> Dict[str, Any]:
    """Fit one model on ``dataset.train`` (plus seen anomalies) and score it on the test set -> one row.

    ``method`` is a method spec (``prn`` or ``prn[use_mf=False]``); ``methods`` are the
    method names of the whole benchmark (to check ``method_params``). With seen
    anomalies drawn from the test set, evaluation and throughput use the reduced test set.
    With ``run_dir`` the run's own folder and page are written there (engine/test_run.py).
    """
    variant = method.strip()
    name, params = variant_params(variant, method_params, methods)
    seen, test = _seen_and_test(dataset, seed, seen_anomalies, seen_dir)
    if seen is not None:
        check_seen_supported(name, "--seen-dir" if seen_dir is not None else "--seen-anomalies")
    model = build_model(
        name, params, backbone=backbone, weights=weights, image_size=image_size, crop_size=crop_size, device=device,
        seed=seed, batch_size=batch_size, cache_dir=cache_dir, use_cache=use_cache, resize=resize,
        tile_size=tile_size, tile_overlap=tile_overlap,
    )
    t0 = time.perf_counter()
    if seen is not None:
        model.fit(dataset.train, progress=progress, seen=seen)
    else:
        model.fit(dataset.train, progress=progress)
    train_seconds = time.perf_counter() - t0  # wall, feature extraction included
    result = evaluate_model(model, test, progress=progress, strict=strict,
                            groups=getattr(dataset, "defect_groups", None))
    if tile_size is None:
        speed = throughput_pair(model, load_images(test[:THROUGHPUT_IMAGES], model.preprocess)[0])
    else:  # a tiled model's cost depends on each image's size; infer_ms_per_image is the measure
        speed = {"model_img_s": float("nan"), "backbone_img_s": float("nan")}
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
        "resize": resize,
        "tile_size": "" if tile_size is None else int(tile_size),
        "tile_overlap": "" if tile_size is None else int(tile_overlap),
        "layout": str(getattr(dataset, "layout", "")),
        "eval_resolution": result.resolution,
        "image_f1_max": m.get("image_f1_max", nan),
        "image_f1_threshold": m.get("image_f1_threshold", nan),
        "pixel_f1_max": m.get("pixel_f1_max", nan),
        "pixel_f1_threshold": m.get("pixel_f1_threshold", nan),
        "throughput_img_s": speed["model_img_s"],
        "backbone_img_s": speed["backbone_img_s"],
        "decode_ms_per_image": 1000.0 * result.timing.get("decode_seconds", nan) / max(1, result.n_images),
        "warmup_seconds": result.timing.get("warmup_seconds", nan),
        "epochs": _fit_info_value(model.fit_info_, "epochs_run"),
        "chosen_epoch": _fit_info_value(model.fit_info_, "best_epoch"),
        "n_train": len(dataset.train),
        "n_test": result.n_images,
        "seen_anomalies": len(seen or []),
        "seen_files": json.dumps(seen_file_names(seen or [])),
        "seen_dir": "" if seen_dir is None else str(seen_dir),
        "group_metrics": json.dumps(result.group_metrics, sort_keys=True) if result.group_metrics else "",
        "batch_size": int(batch_size),
        "device": str(model.device_),
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
    if run_dir is not None:
        from .test_run import write_test_run

        title = f"defectkit benchmark run: {variant} on {dataset.name}, seed {seed}"
        write_test_run(model, result, Path(run_dir), title, extra={"data": str(data_path), "seed": int(seed)})
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
    strict: bool = False,
    layout: Optional[str] = None,
    resize: str = "square",
    tile_size: Optional[int] = None,
    tile_overlap: int = 32,
    run_pages: bool = False,
) -> List[Dict[str, Any]]:
    """Fit and evaluate every method x category x seed; returns one row dict per run.

    Metrics are fractions in [0, 1]. ``train_seconds`` is the wall time of ``fit``
    (feature extraction included); ``peak_rss_mb`` is the peak resident memory of the
    whole process up to the end of that run (``ru_maxrss``), so it never decreases
    along the rows. ``use_cache`` is off by default so that every run pays its own
    feature extraction; with it on, runs after the first reuse cached features and
    their train_seconds are not comparable (recorded in column ``feature_cache``).
    With ``out_dir``: results.csv, results.json and summary.md are (re)written after
    every run; any of those (or seen_anomalies.json) already there raises FileExistsError
    unless ``overwrite``, and an output folder that cannot be written raises OutputError.
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
    ``strict``: a mask whose size differs from its image's is an error (checked for every
    category before the first run) instead of a warning.

    ``data_paths`` may be roots holding several categories of any layout (``layout``
    forces one): each category is run, and summaries add the mean over categories.
    ``resize``, ``tile_size`` and ``tile_overlap`` are the models' preprocessing
    (``--resize``, ``--tile``, ``--tile-overlap``), recorded in every row.
    ``run_pages`` (needs ``out_dir``): every run also writes its own folder and page under
    ``out_dir/runs/<variant>-<category>-seed<seed>/`` (column ``run_page``), linked from
    benchmark.html.
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
    categories = resolve_categories(data_paths, layout=layout)
    if not categories:
        raise ValueError("no data folders given")
    datasets = [(p, load_dataset(p, layout=layout)) for p in categories]
    names_seen: Dict[str, Path] = {}
    for p, ds in datasets:
        if ds.name in names_seen:
            raise ValueError(f"two categories are both named {ds.name!r} ('{names_seen[ds.name]}' and '{p}'); "
                             "results are keyed by category name, so run them in separate benchmarks")
        names_seen[ds.name] = p
    if strict:
        for _, ds in datasets:
            check_mask_sizes(ds.test, strict=True)  # a mask of the wrong size: fail now, not after a run
    if seen_anomalies:
        for _, ds in datasets:
            for seed in seeds:
                draw_seen_anomalies(ds, seen_anomalies, seed)  # too few defects with masks: fail now
    out = Path(out_dir) if out_dir is not None else None
    existing = [out / name for name in RESULT_FILES if (out / name).exists()] if out is not None else []
    if existing and not overwrite:
        raise FileExistsError(
            f"{existing[0]} already exists; choose another output folder or pass overwrite=True "
            "(CLI: --force) to replace it"
        )
    if out is not None:
        check_output_dir(out_dir)  # read-only or full: fail before the first run, not after it
    from ..backbones import create_backbone

    create_backbone(backbone, weights)  # unknown backbone / bad weights fail now, not after a first run
    for _, name, params in variants:  # parameter values checked now, not after a first run
        build_model(name, params, backbone=backbone, weights=weights, image_size=image_size, crop_size=crop_size,
                    device=device, batch_size=batch_size, cache_dir=cache_dir, use_cache=use_cache, resize=resize,
                    tile_size=tile_size, tile_overlap=tile_overlap)
    if run_pages and out is None:
        raise ValueError("run pages need an output folder (out_dir)")
    env = environment_info(device)
    rows: List[Dict[str, Any]] = []
    runs = [(v, p, ds, s) for v, _, _ in variants for p, ds in datasets for s in seeds]
    with progress_bar(runs, desc="benchmark", unit="run", enabled=progress, leave=True) as bar:
        for variant, path, ds, seed in bar:
            bar.set_postfix_str(f"{variant} {ds.name} seed {seed}")
            page_dir = Path("runs") / slug(f"{variant}-{ds.name}-seed{seed}") if run_pages else None
            rows.append(
                run_one(
                    variant, ds, path, backbone, seed, weights=weights, image_size=image_size, crop_size=crop_size,
                    device=device, batch_size=batch_size, cache_dir=cache_dir, use_cache=use_cache,
                    method_params=method_params, methods=names, progress=progress, env=env,
                    seen_anomalies=seen_anomalies, seen_dir=seen_dir, strict=strict, resize=resize,
                    tile_size=tile_size, tile_overlap=tile_overlap,
                    run_dir=None if page_dir is None else out / page_dir,
                )
            )
            if page_dir is not None:
                rows[-1]["run_page"] = (page_dir / "report.html").as_posix()
            if out is not None:
                write_results(out, rows, env=env, seeds=seeds, command=command)
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


