"""Throughput of ``defectkit serve`` under load vs. ``defectkit predict`` on the same files, same scorer.

One run, on one model file:

1. ``predict``: the library call behind the command (``engine.predict.predict_files``,
   overlays off, since ``/predict`` draws none unless asked) scores every image under
   ``--data``/test through ``load_scorer(--model)``; images per second of that call (model
   loading excluded), after one warm-up chunk. Measured before and after the service, and
   averaged, so a change in the machine's load during the run shows as their difference.
2. ``serve``: ``defectkit serve --model`` in a subprocess on 127.0.0.1 (default settings:
   batches of up to 8, 5 ms wait), warmed with 32 requests, then ``--requests`` ``POST
   /predict`` of the same files (cycled) from ``--clients`` concurrent clients
   (``defectkit.serve.load.run_load``); requests per second, p50/p99 latency, errors, and
   the server's resident memory after the first 200 requests and after the run.

The clients run on the same CPU as the server, so the service pays for its own load
generation; ``predict`` pays for nothing but decoding and scoring. Run it alone on the
machine (``flock /tmp/timing.lock``), at normal priority:

    flock /tmp/timing.lock python benchmarks/serve_load.py --model bottle.pt \\
        --data ../shared/data/mvtec_ad/bottle --out benchmarks/results/serve-load-<date>
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def load_average() -> list:
    return [round(x, 2) for x in os.getloadavg()]


def predict_throughput(model: Path, data: Path) -> dict:
    """Images per second of predict_files over ``data``/test (overlays off), model already loaded."""
    from defectkit.deploy.loading import load_scorer
    from defectkit.engine.inputs import Inputs, expand_inputs
    from defectkit.engine.predict import predict_files
    from defectkit.utils.outputs import OutputDir

    scorer = load_scorer(model, device="cpu")
    inputs = expand_inputs([str(data / "test")], recursive=True)
    with tempfile.TemporaryDirectory() as tmp:
        with OutputDir.prepare(Path(tmp) / "warm", False) as out:
            predict_files(
                scorer,
                Inputs(inputs.files[:8], inputs.names[:8]),
                out,
                scorer.thresholds,
                overlays=False,
                progress=False,
            )
        with OutputDir.prepare(Path(tmp) / "run", False) as out:
            start = time.perf_counter()
            summary = predict_files(scorer, inputs, out, scorer.thresholds, overlays=False, progress=False)
            seconds = time.perf_counter() - start
    return {
        "images": summary.n_scored,
        "seconds": round(seconds, 3),
        "throughput_ips": round(summary.n_scored / seconds, 2),
        "defect": summary.n_defect,
        "good": summary.n_good,
        "load_average": load_average(),
    }


def serve_throughput(model: Path, data: Path, requests: int, clients: int) -> dict:
    import psutil
    from serve_server import running_server

    from defectkit.serve.load import run_load

    files = sorted((data / "test").glob("*/*.png"))
    with running_server(model) as (proc, url):
        run_load(f"{url}/predict", files[:32], 32, clients)  # warm-up
        server, rss = psutil.Process(proc.pid), {}

        def after(n):
            rss[n] = server.memory_info().rss

        warm = min(200, requests // 2)  # memory is compared with what it was after the first 200
        after.at = (warm,)
        result = run_load(f"{url}/predict", files, requests, clients, after=after)
        rss["end"] = server.memory_info().rss
        import httpx

        metrics = httpx.get(f"{url}/metrics").text
    batches = {
        line.split()[0]: float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith(("defectkit_batch_size_count", "defectkit_batch_size_sum"))
    }
    summary = result.summary()
    summary.update(
        rss_after_warm_requests=warm,
        rss_after_warm_mb=round(rss[warm] / 2**20, 1),
        rss_after_run_mb=round(rss["end"] / 2**20, 1),
        mean_batch_size=round(batches["defectkit_batch_size_sum"] / batches["defectkit_batch_size_count"], 2),
        load_average=load_average(),
        first_errors=result.errors[:5],
    )
    return summary


def versions() -> dict:
    import fastapi
    import numpy
    import onnxruntime
    import torch
    import uvicorn

    import defectkit

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return {
        "defectkit": defectkit.__version__,
        "commit": commit,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
    }


def summary_markdown(r: dict) -> str:
    s, b, a, v = r["serve"], r["predict_before"], r["predict_after"], r["versions"]
    return f"""# defectkit serve under load vs defectkit predict

Command: `{r["command"]}` (started {r["started"]}, commit {v["commit"][:10]}).
Model: `{r["model"]}`; images: every `test/*/*.png` of `{r["data"]}`.
Machine: {v["machine"]}; torch {v["torch"]} ({v["torch_threads"]} threads), onnxruntime {v.get("onnxruntime", "-")}, fastapi {v["fastapi"]},
uvicorn {v["uvicorn"]}, python {v["python"]}.

| run | images or requests | seconds | throughput | load average (1, 5, 15 min) at its end |
|---|---|---|---|---|
| predict (before) | {b["images"]} | {b["seconds"]} | {b["throughput_ips"]} img/s | {b["load_average"]} |
| serve, {s["concurrency"]} clients | {s["requests"]} | {s["seconds"]} | {s["throughput_rps"]} req/s | {s["load_average"]} |
| predict (after) | {a["images"]} | {a["seconds"]} | {a["throughput_ips"]} img/s | {a["load_average"]} |

- serve / predict throughput: **{r["serve_over_predict"]}** (predict: mean of before and after, {r["predict_mean_ips"]} img/s)
- serve latency: p50 {s["p50_ms"]} ms, p99 {s["p99_ms"]} ms; errors: {s["errors"]}; statuses {s["statuses"]}
- mean batch size (dynamic batching): {s["mean_batch_size"]}
- server RSS: {s["rss_after_warm_mb"]} MiB after {s["rss_after_warm_requests"]} requests, {s["rss_after_run_mb"]} MiB after the run ({r["rss_growth"]:+.1%})
- labels (serve): {s["labels"]}; predict: {b["defect"]} defect, {b["good"]} good per pass

The clients (threads with httpx) run on the same CPUs as the server.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="model file (defectkit train)")
    ap.add_argument("--data", type=Path, required=True, help="MVTec-style category; its test/*/*.png are scored")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} is not empty; choose another --out")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    before = predict_throughput(args.model, args.data)
    print(f"predict (before): {before}", flush=True)
    serve = serve_throughput(args.model, args.data, args.requests, args.clients)
    print(f"serve: {serve}", flush=True)
    after = predict_throughput(args.model, args.data)
    print(f"predict (after): {after}", flush=True)
    predict_ips = (before["throughput_ips"] + after["throughput_ips"]) / 2
    ratio = serve["throughput_rps"] / predict_ips
    result = {
        "started": started,
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "model": str(args.model),
        "data": str(args.data),
        "predict_before": before,
        "serve": serve,
        "predict_after": after,
        "predict_mean_ips": round(predict_ips, 2),
        "serve_over_predict": round(ratio, 3),
        "rss_growth": round(serve["rss_after_run_mb"] / serve["rss_after_warm_mb"] - 1, 4),
        "versions": versions(),
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "summary.md").write_text(summary_markdown(result))
    print(
        f"serve / predict throughput: {ratio:.2f} (serve {serve['throughput_rps']} req/s, predict "
        f"{predict_ips:.2f} img/s); wrote {args.out / 'results.json'}"
    )
    return 0 if serve["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
