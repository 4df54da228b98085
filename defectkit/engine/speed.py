"""``defectkit speed``: images per second of an exported model, and of its torch model, in one run.

Two numbers per engine:

* **graph**: the scorer alone on one preprocessed batch (``batch_size`` images, the
  model's resolution), ``CALLS_PER_PASS`` calls per timed pass after two warm-up calls;
* **end to end**: every image file of ``input_dir`` decoded, resized and scored. Reader
  threads (``readers``) decode and preprocess whole batches ahead of the scorer (at most
  ``readers + 1`` batches in flight), so decoding overlaps inference as on a line; wall
  time over all files, after one warm-up pass.

The engines are timed in interleaved rounds: each of ``repeats`` rounds runs one pass of
every engine (the order alternating from round to round), and each engine's number is the
median of its passes. The ONNX Runtime / torch ratio is the median of the per-round ratios:
both passes of a round see the same machine state, so a slow spell on a shared box moves
both and leaves the ratio, where engines measured one after the other (or a best pass of
each) move it by as much as the spell (torch alone moved +-10 % between runs here). The
best pass of each engine is recorded as well.

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
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..utils.cpu import cpu_description

PathLike = Union[str, Path]
#: graph calls per timed pass (at batch 8: 64 images)
CALLS_PER_PASS = 8
#: EngineSpeed field of a median -> the field of its passes
_PASSES = {"graph_images_per_s": "graph_passes", "end_to_end_images_per_s": "end_to_end_passes"}


@dataclass
class EngineSpeed:
    """One engine's medians over its timed passes, and the passes themselves (images/s)."""

    engine: str
    graph_images_per_s: float
    end_to_end_images_per_s: Optional[float] = None
    graph_passes: List[float] = field(default_factory=list)
    end_to_end_passes: List[float] = field(default_factory=list)


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
        """ONNX Runtime / torch for ``what`` ("graph_images_per_s" or "end_to_end_images_per_s"):
        the median of the per-round ratios of the interleaved passes."""
        passes = {e.engine: getattr(e, _PASSES[what]) for e in self.engines}
        onnx, torch_ = passes.get("onnxruntime"), passes.get("torch")
        if not onnx or not torch_ or len(onnx) != len(torch_):
            return None
        return float(np.median(np.asarray(onnx) / np.asarray(torch_)))

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
                out.append(f"onnxruntime / torch, {label}: {r:.2f}x (median of {self.repeats} paired rounds)")
        env = self.environment
        out.append(f"load average at start {env.get('load_start')}, at end {env.get('load_end')}")
        return out

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["ratios"] = {k: self.ratio(k) for k in ("graph_images_per_s", "end_to_end_images_per_s")}
        return d

    def markdown(self) -> str:
        rows = ["| engine | graph img/s | graph passes | end-to-end img/s |", "|---|---|---|---|"]
        for e in self.engines:
            e2e = "" if e.end_to_end_images_per_s is None else f"{e.end_to_end_images_per_s:.1f}"
            passes = ", ".join(f"{v:.1f}" for v in e.graph_passes)
            rows.append(f"| {e.engine} | {e.graph_images_per_s:.1f} | {passes} | {e2e} |")
        for what, label in (("graph_images_per_s", "graph"), ("end_to_end_images_per_s", "end to end")):
            r = self.ratio(what)
            if r is not None:
                rows.append(f"\nONNX Runtime / torch, {label}: {r:.2f}x (median of the per-round ratios).")
        env = self.environment
        head = (
            f"# Speed of {Path(self.model).name} ({self.method}, {self.image_size} px)\n\n"
            f"Batch {self.batch_size}, {self.threads} intra-op threads, {self.readers} reader threads; medians of "
            f"{self.repeats} interleaved rounds (one pass per engine each); end to end over {self.n_files} files"
            f"{' in ' + str(self.input_dir) if self.input_dir else ''}.\n\n"
        )
        tail = (
            f"\n\nLoad average at start {env.get('load_start')}, at end {env.get('load_end')}; "
            f"{env.get('machine')}; CPU {env.get('cpu', '-')}; onnxruntime {env.get('onnxruntime')}, torch {env.get('torch', '-')}, "
            f"defectkit {env.get('defectkit')}; {env.get('date')}.\n"
        )
        return head + "\n".join(rows) + tail


def _rate(run: Callable[[], int]) -> float:
    """images/s of one pass of ``run`` (which returns the images it scored)."""
    t0 = time.perf_counter()
    n = run()
    return n / max(time.perf_counter() - t0, 1e-9)


def graph_pass(score: Callable[[Any], Any], batch: Any, n_images: int) -> Callable[[], int]:
    """One timed graph pass: ``CALLS_PER_PASS`` calls of ``score(batch)``; warmed up here."""
    score(batch)
    score(batch)

    def run() -> int:
        for _ in range(CALLS_PER_PASS):
            score(batch)
        return CALLS_PER_PASS * n_images

    return run


def pipeline_pass(scorer, files: Sequence[Path], batch_size: int, readers: int) -> Callable[[], int]:
    """One end-to-end pass: batches read by ``readers`` threads ahead of ``scorer.score``;
    one untimed pass here first (file cache, one-time set-up, as on a line running a while)."""
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

    run()
    return run


def interleaved_rates(runs: Sequence[Callable[[], int]], rounds: int) -> List[List[float]]:
    """images/s of every pass of each of ``runs``, timed in ``rounds`` interleaved rounds (one
    pass of each per round, the order reversed every other round) -> one list per run."""
    rates: List[List[float]] = [[] for _ in runs]
    for r in range(rounds):
        order = range(len(runs)) if r % 2 == 0 else reversed(range(len(runs)))
        for i in order:
            rates[i].append(_rate(runs[i]))
    return rates


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
    repeats: int = 5,
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
    engines: List[Tuple[str, Callable[[], int], Optional[Callable[[], int]]]] = [
        (
            "onnxruntime",
            graph_pass(scorer.run, x, batch_size),
            pipeline_pass(scorer, files, batch_size, readers) if files else None,
        )
    ]
    env: Dict[str, Any] = {
        "onnxruntime": onnxruntime.__version__,
        "defectkit": __version__,
        "machine": f"{platform.platform()}; {os.cpu_count()} CPUs",
        "cpu": cpu_description(),
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if torch_model is not None:
        graph, pipeline, env["torch"] = _torch_passes(torch_model, images, files, batch_size, threads, readers)
        engines.append(("torch", graph, pipeline))
    graph_rates = interleaved_rates([g for _, g, _ in engines], repeats)
    e2e_rates = interleaved_rates([p for _, _, p in engines if p is not None], repeats) if files else None
    for i, (name, _, _) in enumerate(engines):
        speed = EngineSpeed(name, float(np.median(graph_rates[i])), graph_passes=graph_rates[i])
        if e2e_rates is not None:
            speed.end_to_end_images_per_s = float(np.median(e2e_rates[i]))
            speed.end_to_end_passes = e2e_rates[i]
        result.engines.append(speed)
    env.update(load_start=load_start, load_end=_load_avg())
    result.environment = env
    return result


def _torch_passes(path: PathLike, images: np.ndarray, files, batch_size: int, threads: int, readers: int):
    """(graph pass, end-to-end pass or None, torch version) of the torch model at ``path``."""
    import torch

    from ..deploy.scorer import TorchScorer
    from ..models import load_model

    torch.set_num_threads(threads)
    model = load_model(path, device="cpu").set_params(batch_size=batch_size, use_cache=False)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    graph = graph_pass(model.predict, x, len(images))
    pipeline = pipeline_pass(TorchScorer(model), files, batch_size, readers) if files else None
    return graph, pipeline, torch.__version__


def write_speed(result: SpeedResult, output) -> List[Path]:
    """speed.json and speed.md into OutputDir ``output``."""
    json_path = output.file("speed.json")
    json_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    md_path = output.file("speed.md")
    md_path.write_text(result.markdown(), encoding="utf-8")
    return [json_path, md_path]
