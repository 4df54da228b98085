"""Batch prediction on Ray Data: many files, actors that each load the model once.

Ray Data holds the list of files to score; ``map_batches`` hands consecutive slices of it
(``PARTITION_FILES`` files) to a pool of actors (:class:`PartitionScorer`), each of which
opened the model file once when it started. An actor scores its slice with the same
:func:`~defectkit.engine.predict.score_chunk` as local ``predict`` and writes the records
to one partition, ``predictions-<first input index>.jsonl`` (and ``.csv``), with masks and
overlays under ``masks/`` and ``overlays/`` as local predict writes them; so the output
folder must be on a filesystem every node can write (docs/scale-out.md). Concatenating
the partitions in name order gives local predict's records in input order, except that
the entries left out before scoring (broken links, folders, ...) are in
``predictions-left-out.jsonl`` instead of first. A file that cannot be decoded is a
record with label ``unreadable``, never a failed task. A partition is rewritten whole when
Ray re-runs it (a worker died), so retries do not duplicate records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Dict, List, Mapping, Optional

from ..utils.progress import progress as progress_bar
from .inputs import Inputs
from .predict import PREDICT_CHUNK, PredictSummary, RecordWriters, colour_scale_text, left_out_record, score_chunk
from .ray_cluster import ray_session

#: Files per partition: one map_batches batch, one predictions-*.jsonl.
PARTITION_FILES = 256
#: Counts an actor returns for each partition (summed by the driver).
COUNTS = ("n_entries", "n_good", "n_defect", "n_unlabelled", "n_unreadable")


class _PartitionFiles:
    """An output folder as seen from an actor: names the files it writes (the driver lists them)."""

    def __init__(self, path: Path):
        self.path = path
        self.written: List[str] = []

    def file(self, relative: str) -> Path:
        target = self.path.joinpath(*PurePosixPath(relative).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.written.append(relative)
        return target


class PartitionScorer:
    """A Ray Data actor: loads the model once, then scores one partition per call."""

    def __init__(
        self, model: str, out: str, device: str, params: Mapping[str, Any], thresholds, overlays: bool, threads: int = 1
    ):
        from ..deploy.loading import load_scorer

        params = dict(params)
        if Path(model).suffix.lower() == ".onnx":  # the runtime's own threads; an .onnx model never needs torch
            params.setdefault("threads", int(threads))
        else:
            import torch

            torch.set_num_threads(int(threads))
        self.scorer = load_scorer(model, device=device, **params)
        self.out = Path(out)
        self.thresholds = thresholds
        self.scale = thresholds.colour_scale() if thresholds is not None else None
        self.overlays = overlays

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        order = sorted(range(len(batch["index"])), key=lambda i: int(batch["index"][i]))
        paths = [Path(str(batch["path"][i])) for i in order]
        names = [str(batch["name"][i]) for i in order]
        stem = f"predictions-{int(batch['index'][order[0]]):08d}"
        files = _PartitionFiles(self.out)
        summary = PredictSummary(self.out, self.thresholds)
        writers = RecordWriters(files, stem)
        unreadable: List[str] = []
        try:
            for start in range(0, len(paths), PREDICT_CHUNK):
                for record in score_chunk(
                    self.scorer,
                    paths[start : start + PREDICT_CHUNK],
                    names[start : start + PREDICT_CHUNK],
                    self.thresholds,
                    self.overlays,
                    self.scale,
                    files,
                    summary,
                ):
                    writers.write(record)
                    summary.n_entries += 1
                    if record["label"] == "unreadable":
                        unreadable.append(f"{record['file']}\t{record['error']}")
        finally:
            writers.close()
        result = {c: [getattr(summary, c)] for c in COUNTS}
        result["partition"] = [stem]
        result["written"] = ["\n".join(files.written)]
        result["unreadable"] = ["\n".join(unreadable)]
        return result


@dataclass
class RayPredictSummary(PredictSummary):
    """A local predict summary plus what the cluster did."""

    workers: int = 0
    partitions: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.n_scored / self.seconds if self.seconds > 0 else float("nan")

    def throughput_line(self) -> str:
        return (
            f"throughput: {self.images_per_second:.1f} images/s ({self.n_scored} scored in {self.seconds:.1f} s "
            f"by {self.workers} workers, {self.partitions} partitions; actor start-up and model loading "
            "included)"
        )


def predict_on_ray(
    model: Path,
    inputs: Inputs,
    out,
    thresholds,
    overlays: bool = True,
    device: str = "auto",
    params: Optional[Mapping[str, Any]] = None,
    workers: Optional[int] = None,
    address: Optional[str] = None,
    progress: bool = True,
    on_unreadable: Optional[Callable[[str, str], None]] = None,
) -> RayPredictSummary:
    """Score ``inputs`` with the model file ``model`` on Ray and write partitioned predictions into ``out``.

    ``out`` is the prepared OutputDir; ``workers`` actors of one CPU each (default: one per
    CPU of the cluster, at most one per partition). ``on_unreadable(file, reason)`` is called for each file that could not
    be decoded, as its partition finishes. Raises ValueError when no input could be read, after writing the
    records that say why, as local predict does."""
    summary = RayPredictSummary(out.path, thresholds)
    summary.colour_scale = colour_scale_text(thresholds.colour_scale() if thresholds is not None else None)
    summary.files = {"jsonl": str(out.path / "predictions-*.jsonl"), "csv": str(out.path / "predictions-*.csv")}
    if inputs.left_out:
        writers = RecordWriters(out, "predictions-left-out")
        try:
            for name, reason in inputs.left_out:
                writers.write(left_out_record(name, reason, summary))
                summary.n_entries += 1
        finally:
            writers.close()
    if inputs.files:
        with ray_session(address) as ray:
            ray.data.DataContext.get_current().enable_progress_bars = False
            items = [
                {"index": i, "path": str(p), "name": n} for i, (p, n) in enumerate(zip(inputs.files, inputs.names))
            ]
            n_partitions = -(-len(items) // PARTITION_FILES)
            summary.workers = min(n_partitions, int(workers or max(1, int(ray.cluster_resources().get("CPU", 1)))))
            ds = ray.data.from_items(items, override_num_blocks=n_partitions)
            scored = ds.map_batches(
                PartitionScorer,
                batch_size=PARTITION_FILES,
                batch_format="numpy",
                concurrency=summary.workers,
                num_cpus=1,
                fn_constructor_kwargs=dict(
                    model=str(model),
                    out=str(out.path),
                    device=device,
                    params=dict(params or {}),
                    thresholds=thresholds,
                    overlays=overlays,
                ),
            )
            start = time.perf_counter()
            with progress_bar(total=len(items), desc="predict (ray)", unit="file", enabled=progress) as bar:
                for part in scored.iter_rows():
                    for c in COUNTS:
                        setattr(summary, c, getattr(summary, c) + int(part[c]))
                    for rel in filter(None, str(part["written"]).split("\n")):
                        out.file(rel)  # listed for the next --force run
                    for line in filter(None, str(part["unreadable"]).split("\n")):
                        if on_unreadable is not None:
                            on_unreadable(*line.split("\t", 1))
                    summary.partitions += 1
                    bar.update(int(part["n_entries"]))
            summary.seconds = time.perf_counter() - start
    if summary.n_scored == 0:
        raise ValueError(
            f"none of the {len(inputs.files)} input files could be read as an image "
            f"(reasons in {out.path}/predictions-*.jsonl)"
        )
    return summary
