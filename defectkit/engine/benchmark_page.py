"""The page of a benchmark (``benchmark.html`` beside ``summary.md``).

What it holds is decided here from the results rows: methods x categories tables of
every metric as mean ± std over seeds (the same ``summarise`` as summary.md), training
time and throughput per method and category as mean ± std (bar charts), and links to
the runs' own pages where the benchmark wrote them (``--run-pages``: column
``run_page``). viz/benchmark_page.py draws it. ``defectkit report BENCH_DIR`` rebuilds
it from ``results.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ..utils.atomic import atomic_write_text
from .results import SUMMARY_METRICS, _finite, _mean_std, _variant, summarise

PathLike = Union[str, Path]

BENCHMARK_PAGE = "benchmark.html"
#: Costs drawn as bar charts: (column, axis label, chart title).
CHARTS = (
    ("train_seconds", "seconds", "Training time (wall time of fit)"),
    ("throughput_img_s", "images / s", "Throughput (model, best of 3 passes)"),
)


def _model_name(variant: str, backbone: str, backbones: int) -> str:
    return variant if backbones <= 1 else f"{variant} ({backbone})"


def benchmark_view(
    rows: Sequence[Mapping[str, Any]], env: Mapping[str, Any], seeds: Sequence[int], command: str, base: PathLike
) -> Dict[str, Any]:
    """Everything viz.benchmark_page needs; ``base`` is the folder the page is written to."""
    base = Path(base)
    summary = summarise(rows)
    backbones = len({str(r["backbone"]) for r in rows})
    models = list(dict.fromkeys(_model_name(s["variant"], s["backbone"], backbones) for s in summary))
    categories = list(dict.fromkeys(str(s["category"]) for s in summary if s["category"] != "mean"))
    has_mean = any(s["category"] == "mean" for s in summary)
    cells: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for s in summary:
        model = _model_name(s["variant"], s["backbone"], backbones)
        cells.setdefault(model, {})[str(s["category"])] = s
    groups: Dict[tuple, List[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((_model_name(_variant(r), str(r["backbone"]), backbones), str(r["category"])), []).append(r)
    charts = []
    for col, label, title in CHARTS:
        series = {}
        for model in models:
            stats = [_mean_std(_finite(x.get(col) for x in groups.get((model, c), []))) for c in categories]
            series[model] = ([m for m, _ in stats], [sd for _, sd in stats])
        charts.append(
            {"id": col.replace("_", "-"), "title": title, "ylabel": label, "groups": categories, "series": series}
        )
    runs = []
    for r in rows:
        link = r.get("run_page") or ""
        exists = bool(link) and (base / str(link)).is_file()
        runs.append(
            {
                **{k: v for k, v in r.items() if not str(k).startswith("_")},
                "model": _model_name(_variant(r), str(r["backbone"]), backbones),
                "run_page": str(link) if exists else "",
            }
        )
    return {
        "title": "defectkit benchmark",
        "models": models,
        "categories": categories + (["mean"] if has_mean else []),
        "metrics": list(SUMMARY_METRICS),
        "cells": cells,
        "charts": charts,
        "runs": runs,
        "seeds": list(seeds),
        "env": dict(env),
        "command": command,
        "summary_file": "summary.md",
    }


def write_benchmark_page(
    out_dir: PathLike,
    rows: Sequence[Mapping[str, Any]],
    env: Mapping[str, Any],
    seeds: Sequence[int],
    command: str,
    path: Optional[PathLike] = None,
) -> Path:
    """Write ``out_dir/benchmark.html`` (or ``path``) atomically."""
    from ..viz.benchmark_page import render_benchmark_page

    path = Path(path) if path is not None else Path(out_dir) / BENCHMARK_PAGE
    view = benchmark_view(rows, env, seeds, command, path.parent)
    return atomic_write_text(path, render_benchmark_page(view))


def benchmark_page_from_dir(bench_dir: PathLike, path: Optional[PathLike] = None, overwrite: bool = False) -> Path:
    """Rebuild the page of a benchmark folder from its ``results.json``."""
    bench_dir = Path(bench_dir)
    src = bench_dir / "results.json"
    try:
        payload = json.loads(src.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{src} not found: a benchmark folder holds the results.json that `defectkit benchmark` writes"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{src} is not valid JSON: {exc}") from None
    rows = payload.get("rows") if isinstance(payload, dict) else None
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{src} holds no result rows")
    for k, r in enumerate(rows):
        missing = {"method", "backbone", "category", "seed"} - set(r)
        if missing:
            raise ValueError(f"{src}: row {k} lacks {sorted(missing)}")
    out = Path(path) if path is not None else bench_dir / BENCHMARK_PAGE
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --force to replace it or --out to write elsewhere")
    seeds = payload.get("seeds") or sorted({int(r["seed"]) for r in rows})
    return write_benchmark_page(
        bench_dir, rows, payload.get("environment") or {}, seeds, str(payload.get("command") or ""), out
    )
