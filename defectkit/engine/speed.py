"""``defectkit speed``: images per second of an exported model, and of its torch model, in one run.

Two numbers per engine:

* **graph**: the scorer alone on one preprocessed batch (``batch_size`` images, the
  model's resolution), called repeatedly after two warm-up calls; the best of
  ``repeats`` passes.
* **end to end**: every image file of ``input_dir`` decoded, resized and scored. Reader
  threads (``readers``) decode and preprocess whole batches ahead of the scorer (at most
  ``readers + 1`` batches in flight), so decoding overlaps inference as on a line; wall
  time over all files, best of ``repeats`` passes.

ONNX Runtime gets ``threads`` intra-op threads; torch gets the same via
``torch.set_num_threads``. The machine's load average is recorded at start and end, since
on a shared box it bounds what any number means.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

PathLike = Union[str, Path]
#: graph calls per timed pass (at batch 8: 64 images)
CALLS_PER_PASS = 8


@dataclass
class EngineSpeed:
    engine: str
    graph_images_per_s: float
    end_to_end_images_per_s: Optional[float] = None


@dataclass
class SpeedResult:
    model: str
    method: str
    image_size: int
    batch_size: int
    threads: int
    readers: int
    repeats: int
    n_files: int
    input_dir: Optional[str]
    engines: List[EngineSpeed] = field(default_factory=list)
    environment: Dict[str, Any] = field(default_factory=dict)

    def ratio(self, what: str) -> Optional[float]:
        by = {e.engine: getattr(e, what) for e in self.engines}
        if by.get("onnxruntime") and by.get("torch"):
            return by["onnxruntime"] / by["torch"]
        return None

    def lines(self) -> List[str]:
        out = [
            f"{self.method} {self.image_size}px, batch {self.batch_size}, {self.threads} threads"
            + (f", {self.n_files} files from {self.input_dir} ({self.readers} reader threads)" if self.n_files else "")
        ]
        for e in self.engines:
            e2e = "" if e.end_to_end_images_per_s is None else f", end to end {e.end_to_end_images_per_s:.1f} img/s"
            out.append(f"{e.engine:<12} graph {e.graph_images_per_s:.1f} img/s{e2e}")
        for what, label in (("graph_images_per_s", "graph"), ("end_to_end_images_per_s", "end to end")):
            r = self.ratio(what)
            if r is not None:
                out.append(f"onnxruntime / torch, {label}: {r:.2f}x")
        env = self.environment
        out.append(f"load average at start {env.get('load_start')}, at end {env.get('load_end')}")
        return out

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["ratios"] = {k: self.ratio(k) for k in ("graph_images_per_s", "end_to_end_images_per_s")}
        return d

    def markdown(self) -> str:
        rows = ["| engine | graph img/s | end-to-end img/s |", "|---|---|---|"]
        for e in self.engines:
            e2e = "" if e.end_to_end_images_per_s is None else f"{e.end_to_end_images_per_s:.1f}"
            rows.append(f"| {e.engine} | {e.graph_images_per_s:.1f} | {e2e} |")
        env = self.environment
        head = (
            f"# Speed of {Path(self.model).name} ({self.method}, {self.image_size} px)\n\n"
            f"Batch {self.batch_size}, {self.threads} intra-op threads, {self.readers} reader threads, best of "
            f"{self.repeats} passes; end to end over {self.n_files} files"
            f"{' in ' + str(self.input_dir) if self.input_dir else ''}.\n\n"
        )
        tail = (
            f"\n\nLoad average at start {env.get('load_start')}, at end {env.get('load_end')}; "
            f"{env.get('machine')}; onnxruntime {env.get('onnxruntime')}, torch {env.get('torch', '-')}, "
            f"defectkit {env.get('defectkit')}; {env.get('date')}.\n"
        )
        return head + "\n".join(rows) + tail


def _best_rate(run: Callable[[], int], repeats: int) -> float:
    """Best images/s over ``repeats`` passes of ``run`` (which returns the images it scored)."""
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = run()
        best = max(best, n / max(time.perf_counter() - t0, 1e-9))
    return best


def graph_rate(score: Callable[[Any], Any], batch: Any, n_images: int, repeats: int) -> float:
    """images/s of ``score(batch)`` (warm-up excluded)."""
    score(batch)
    score(batch)

    def run() -> int:
        for _ in range(CALLS_PER_PASS):
            score(batch)
        return CALLS_PER_PASS * n_images

    return _best_rate(run, repeats)


def pipeline_rate(scorer, files: Sequence[Path], batch_size: int, readers: int, repeats: int) -> float:
    """End-to-end images/s: batches read by ``readers`` threads ahead of ``scorer.score``."""
    chunks = [list(files[i : i + batch_size]) for i in range(0, len(files), batch_size)]

    def run() -> int:
        done = 0
        with ThreadPoolExecutor(readers, thread_name_prefix="defectkit-read") as pool:
            pending: deque = deque()
            it = iter(chunks)
            for chunk in it:
                pending.append(pool.submit(scorer.load_batch, chunk))
                if len(pending) > readers:
                    break
            while pending:
                batch, ok, _ = pending.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(scorer.load_batch, nxt))
                scorer.score(batch)
                done += len(ok)
        return done

    run()  # warm-up pass: file cache and one-time set-up, as a line that has been running a while
    return _best_rate(run, repeats)


def _load_avg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


def measure_speed(
    model: PathLike,
    torch_model: Optional[PathLike] = None,
    input_dir: Optional[PathLike] = None,
    batch_size: int = 8,
    threads: int = 2,
    readers: int = 2,
    repeats: int = 3,
    max_files: Optional[int] = None,
) -> SpeedResult:
    """Measure the ONNX model ``model`` (and ``torch_model``) -> SpeedResult."""
    import onnxruntime

    from .. import __version__
    from ..data.images import list_images
    from ..deploy.onnx_scorer import OnnxScorer, to_model_input

    if Path(model).suffix.lower() != ".onnx":
        raise ValueError(
            f"--model {model}: speed measures an exported .onnx model (defectkit export); "
            "give the .pt file as --torch-model"
        )
    load_start = _load_avg()
    scorer = OnnxScorer(model, batch_size=batch_size, threads=threads, decode_workers=1)
    files = list_images(input_dir) if input_dir else []
    if input_dir and not files:
        raise FileNotFoundError(f"--input {input_dir}: no images in this folder")
    files = files[:max_files] if max_files else files
    size = scorer.output_size
    if files:
        sample, _, _ = scorer.load_batch((files * batch_size)[:batch_size])
        images = sample.images
    else:
        images = np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    x = to_model_input(images)
    result = SpeedResult(
        str(model),
        scorer.method,
        size,
        batch_size,
        threads,
        readers,
        repeats,
        len(files),
        None if input_dir is None else str(input_dir),
    )
    onnx = EngineSpeed("onnxruntime", graph_rate(lambda b: scorer.run(b), x, batch_size, repeats))
    if files:
        onnx.end_to_end_images_per_s = pipeline_rate(scorer, files, batch_size, readers, repeats)
    result.engines.append(onnx)
    env: Dict[str, Any] = {
        "onnxruntime": onnxruntime.__version__,
        "defectkit": __version__,
        "machine": f"{platform.platform()}; {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if torch_model is not None:
        env["torch"] = _measure_torch(result, torch_model, images, files, batch_size, threads, readers, repeats)
    env.update(load_start=load_start, load_end=_load_avg())
    result.environment = env
    return result


def _measure_torch(
    result: SpeedResult,
    path: PathLike,
    images: np.ndarray,
    files,
    batch_size: int,
    threads: int,
    readers: int,
    repeats: int,
) -> str:
    import torch

    from ..deploy.scorer import TorchScorer
    from ..models import load_model

    torch.set_num_threads(threads)
    model = load_model(path, device="cpu").set_params(batch_size=batch_size, use_cache=False)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    speed = EngineSpeed("torch", graph_rate(model.predict, x, len(images), repeats))
    if files:
        speed.end_to_end_images_per_s = pipeline_rate(TorchScorer(model), files, batch_size, readers, repeats)
    result.engines.append(speed)
    return torch.__version__


def write_speed(result: SpeedResult, output) -> List[Path]:
    """speed.json and speed.md into OutputDir ``output``."""
    json_path = output.file("speed.json")
    json_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    md_path = output.file("speed.md")
    md_path.write_text(result.markdown(), encoding="utf-8")
    return [json_path, md_path]
