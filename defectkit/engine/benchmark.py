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

import contextlib
import datetime as _dt
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..data.batches import load_images
from ..data.folder import load_dataset, resolve_categories
from ..data.mask_size import check_mask_sizes
from ..data.seen_anomalies import draw_seen_anomalies, seen_file_names, seen_from_folder
from ..models.factory import build_model, check_seen_supported, resolve_variants, variant_params
from ..utils.output import check_output_dir
from ..utils.progress import progress as progress_bar
from ..utils.progress import write as progress_write
from .environment import environment_info, peak_rss_mb
from .evaluate import evaluate_model, throughput_pair
from .predict import slug
from .results import THROUGHPUT_IMAGES, write_results
from .results_stream import (
    FLOAT_COLUMNS,
    ResultsStream,
    failed,
    in_grid_order,
    read_rows,
    run_key,
    setting_differences,
    stream_columns,
)

PathLike = Union[str, Path]

#: Files a benchmark writes into its output folder; none is replaced without ``overwrite``.
RESULT_FILES = ("results.csv", "results.json", "summary.md", "seen_anomalies.json")
#: Where the runs of a grid can be executed.
ENGINES = ("local", "ray")


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


def run_one(
    method,
    dataset,
    data_path,
    backbone,
    seed,
    *,
    weights,
    image_size,
    crop_size,
    device,
    batch_size,
    cache_dir,
    use_cache,
    method_params,
    methods,
    progress,
    env,
    seen_anomalies: int = 0,
    seen_dir: Optional[PathLike] = None,
    strict: bool = False,
    resize: str = "square",
    tile_size: Optional[int] = None,
    tile_overlap: int = 32,
    run_dir: Optional[PathLike] = None,
) -> Dict[str, Any]:
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
        name,
        params,
        backbone=backbone,
        weights=weights,
        image_size=image_size,
        crop_size=crop_size,
        device=device,
        seed=seed,
        batch_size=batch_size,
        cache_dir=cache_dir,
        use_cache=use_cache,
        resize=resize,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
    )
    t0 = time.perf_counter()
    if seen is not None:
        model.fit(dataset.train, progress=progress, seen=seen)
    else:
        model.fit(dataset.train, progress=progress)
    train_seconds = time.perf_counter() - t0  # wall, feature extraction included
    result = evaluate_model(
        model, test, progress=progress, strict=strict, groups=getattr(dataset, "defect_groups", None)
    )
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
    engine: str = "local",
    ray_address: Optional[str] = None,
    cpus_per_run: Optional[int] = None,
    resume: bool = False,
) -> List[Dict[str, Any]]:
    """Fit and evaluate every method x category x seed; returns one row dict per run.

    Metrics are fractions in [0, 1]. ``train_seconds`` is the wall time of ``fit``
    (feature extraction included); ``peak_rss_mb`` is the peak resident memory of the
    whole process up to the end of that run (``ru_maxrss``), so it never decreases
    along the rows. ``use_cache`` is off by default so that every run pays its own
    feature extraction; with it on, runs after the first reuse cached features and
    their train_seconds are not comparable (recorded in column ``feature_cache``).
    With ``out_dir``: each run's row is appended to results.csv (and flushed) as soon as
    the run finishes; results.json, summary.md and benchmark.html are written at the end
    from results.csv, rows in the grid's order (engine/results_stream.py). Any of those
    (or seen_anomalies.json) already there raises FileExistsError unless ``overwrite`` or
    ``resume``, and an output folder that cannot be written raises OutputError.
    ``resume``: the runs already in results.csv are kept and not run again (a recorded
    failure is run again); a recorded run whose settings differ from this call's, or that
    is not part of this grid, is a ValueError naming the file.
    A run that raises is recorded (column ``error``, metrics empty) and the grid goes on;
    summaries leave failed runs out.
    ``engine``: ``local`` runs one run after the other in this process; ``ray`` makes each
    run one Ray task with ``cpus_per_run`` CPUs (default 1) on the cluster at
    ``ray_address`` (None: a private Ray on this machine; ``auto``: the cluster this
    machine joined), data folders read by the node that runs the task
    (engine/ray_benchmark.py). ``cpus_per_run`` also sets torch's threads per run (the
    local engine leaves them as they are when it is None).
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
            raise ValueError(
                f"two categories are both named {ds.name!r} ('{names_seen[ds.name]}' and '{p}'); "
                "results are keyed by category name, so run them in separate benchmarks"
            )
        names_seen[ds.name] = p
    if strict:
        for _, ds in datasets:
            check_mask_sizes(ds.test, strict=True)  # a mask of the wrong size: fail now, not after a run
    if seen_anomalies:
        for _, ds in datasets:
            for seed in seeds:
                draw_seen_anomalies(ds, seen_anomalies, seed)  # too few defects with masks: fail now
    out = Path(out_dir) if out_dir is not None else None
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "ray":
        from .ray_cluster import import_ray

        import_ray()  # not installed: say what to install before anything is written
    if cpus_per_run is not None and int(cpus_per_run) < 1:
        raise ValueError(f"cpus per run must be >= 1, got {cpus_per_run}")
    if resume and overwrite:
        raise ValueError("give resume (keep the finished runs) or overwrite (start again), not both")
    if resume and out is None:
        raise ValueError("resume needs the output folder (out_dir) of the benchmark to resume")
    existing = [out / name for name in RESULT_FILES if (out / name).exists()] if out is not None else []
    if existing and not overwrite and not resume:
        raise FileExistsError(
            f"{existing[0]} already exists; choose another output folder, pass overwrite=True "
            "(CLI: --force) to replace it, or resume=True (CLI: --resume) to finish its missing runs"
        )
    if out is not None:
        check_output_dir(out_dir)  # read-only or full: fail before the first run, not after it
    from ..backbones import create_backbone

    create_backbone(backbone, weights)  # unknown backbone / bad weights fail now, not after a first run
    model_settings = dict(
        backbone=backbone,
        weights=weights,
        image_size=image_size,
        crop_size=crop_size,
        device=device,
        batch_size=batch_size,
        cache_dir=cache_dir,
        use_cache=use_cache,
        resize=resize,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
    )
    for _, name, params in variants:  # parameter values checked now, not after a first run
        build_model(name, params, **model_settings)
    if run_pages and out is None:
        raise ValueError("run pages need an output folder (out_dir)")
    env = environment_info(device)
    shared = dict(
        **model_settings,
        method_params=method_params,
        methods=names,
        seen_anomalies=seen_anomalies,
        seen_dir=seen_dir,
        strict=strict,
    )
    n_seen = len(seen_from_folder(seen_dir)) if seen_dir is not None else seen_anomalies
    runs = [
        PlannedRun(variant, name, params, Path(path), ds.name, seed, layout, run_pages, n_seen)
        for variant, name, params in variants
        for path, ds in datasets
        for seed in seeds
    ]
    loaded = {Path(p): ds for p, ds in datasets}
    keys = [r.key for r in runs]
    done: List[Dict[str, Any]] = []
    if resume and (out / "results.csv").exists():
        done = finished_rows(out / "results.csv", runs, shared)
    finished = {run_key(r) for r in done}
    todo = [r for r in runs if r.key not in finished]
    if resume and progress:
        progress_write(
            f"resume: {len(done)} of {len(runs)} runs already in {out / 'results.csv'}; running the other {len(todo)}",
            file=sys.stderr,
        )
    session_rows: Dict[Tuple[str, str, str, int], Dict[str, Any]] = {}
    stream = ResultsStream(out / "results.csv", stream_columns(run_pages), keep=done) if out is not None else None

    def on_row(row: Dict[str, Any]) -> None:
        session_rows[run_key(row)] = row
        if stream is not None:
            stream.append(row)

    try:
        if engine == "ray":
            from .ray_benchmark import run_on_ray

            run_on_ray(
                todo, shared, out, on_row, address=ray_address, cpus_per_run=int(cpus_per_run or 1), progress=progress
            )
        else:
            with progress_bar(todo, desc="benchmark", unit="run", enabled=progress, leave=True) as bar:
                for run in bar:
                    bar.set_postfix_str(f"{run.variant} {run.category} seed {run.seed}")
                    on_row(
                        execute_run(
                            run,
                            shared,
                            out,
                            dataset=loaded[run.data_path],
                            threads=cpus_per_run,
                            progress=progress,
                            env=env,
                        )
                    )
    finally:
        if stream is not None:
            stream.close()
    if out is None:
        rows = in_grid_order(list(session_rows.values()), keys)
    else:  # the summary is built from results.csv, so it is the same whichever engine ran and in whatever order
        rows = in_grid_order(read_rows(out / "results.csv"), keys)
        for r in rows:
            fit_info = session_rows.get(run_key(r), {}).get("_fit_info")
            if fit_info is not None:
                r["_fit_info"] = fit_info
        write_results(out, rows, env=env, seeds=seeds, command=command)
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


@dataclass(frozen=True)
class PlannedRun:
    """One cell of a benchmark grid: what to fit, on which category folder, with which seed."""

    variant: str
    method: str
    params: Mapping[str, Any]
    data_path: Path
    category: str
    seed: int
    layout: Optional[str] = None
    run_page: bool = False
    n_seen: int = 0

    @property
    def key(self) -> Tuple[str, str, str, int]:
        return (self.method, self.variant, self.category, int(self.seed))

    @property
    def page_dir(self) -> Optional[Path]:
        return Path("runs") / slug(f"{self.variant}-{self.category}-seed{self.seed}") if self.run_page else None

    def settings(self, shared: Mapping[str, Any]) -> Dict[str, Any]:
        """The values of SETTING_COLUMNS this run records (what decides whether a recorded row is this run)."""
        tiled = shared["tile_size"] is not None
        return {
            "backbone": shared["backbone"],
            "weights": "" if shared["weights"] is None else str(shared["weights"]),
            "image_size": int(shared["image_size"]),
            "crop_size": "" if shared["crop_size"] is None else int(shared["crop_size"]),
            "resize": shared["resize"],
            "tile_size": int(shared["tile_size"]) if tiled else "",
            "tile_overlap": int(shared["tile_overlap"]) if tiled else "",
            "method_params": json.dumps(dict(self.params), sort_keys=True, default=str),
            "batch_size": int(shared["batch_size"]),
            "feature_cache": bool(shared["use_cache"]),
            "seen_anomalies": int(self.n_seen),
            "seen_dir": "" if shared["seen_dir"] is None else str(shared["seen_dir"]),
            "data_path": str(self.data_path),
        }


def finished_rows(csv_path: Path, runs: Sequence[PlannedRun], shared: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The rows of ``csv_path`` that are finished runs of this grid (failures are left to run again).

    A recorded run that is not in this grid, or was run with other settings, is a ValueError:
    resuming would mix two different benchmarks in one table."""
    by_key = {r.key: r for r in runs}
    keep = []
    for row in read_rows(csv_path):
        key = run_key(row)
        run = by_key.get(key)
        if run is None:
            raise ValueError(
                f"{csv_path}: cannot resume: it holds run {'/'.join(map(str, key))}, which is not part "
                "of this benchmark (other methods, categories or seeds); use another output folder, "
                "or --force to start again"
            )
        diffs = setting_differences(row, run.settings(shared))
        if diffs:
            raise ValueError(
                f"{csv_path}: cannot resume: run {'/'.join(map(str, key))} was recorded with other "
                f"settings ({'; '.join(diffs)}); use another output folder, or --force to start again"
            )
        if not failed(row):
            keep.append(row)
    return keep


def failed_row(
    run: PlannedRun, shared: Mapping[str, Any], env: Mapping[str, Any], exc: BaseException
) -> Dict[str, Any]:
    """The row of a run that raised: its key and settings, empty metrics, and the error."""
    row: Dict[str, Any] = {c: float("nan") for c in FLOAT_COLUMNS}
    row.update(run.settings(shared))
    row.update(
        method=run.method,
        variant=run.variant,
        category=run.category,
        seed=int(run.seed),
        device=str(shared["device"]),
        layout=run.layout or "",
        torch_version=env.get("torch_version", ""),
        defectkit_version=env.get("defectkit_version", ""),
        python_version=env.get("python_version", ""),
        machine=env.get("machine", ""),
        timestamp=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        error=f"{type(exc).__name__}: {exc}".strip(),
    )
    return row


@contextlib.contextmanager
def _torch_threads(n: Optional[int]):
    """torch's intra-op threads set to ``n`` for the block (unchanged when None)."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def execute_run(
    run: PlannedRun,
    shared: Mapping[str, Any],
    out: Optional[Path],
    dataset=None,
    threads: Optional[int] = None,
    progress: bool = False,
    env: Optional[Mapping[str, Any]] = None,
    node: str = "",
) -> Dict[str, Any]:
    """One run of the grid -> its row; an exception becomes a failed row, so the grid goes on.

    ``dataset`` None: the category folder is opened here (a Ray task on another node reads
    it from the shared path). Every engine runs a grid cell through this function."""
    env = dict(env or environment_info(shared["device"]))
    try:
        with _torch_threads(threads):
            ds = dataset if dataset is not None else load_dataset(run.data_path, layout=run.layout)
            page_dir = run.page_dir
            row = run_one(
                run.variant,
                ds,
                run.data_path,
                seed=run.seed,
                progress=progress,
                env=env,
                run_dir=None if page_dir is None or out is None else Path(out) / page_dir,
                **shared,
            )
            if page_dir is not None:
                row["run_page"] = (page_dir / "report.html").as_posix()
    except Exception as exc:  # noqa: BLE001 - recorded in the row; KeyboardInterrupt still stops the grid
        row = failed_row(run, shared, env, exc)
    row["weights"] = "" if shared["weights"] is None else str(shared["weights"])
    row["node"] = node
    row.setdefault("error", "")
    return row
