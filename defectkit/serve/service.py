"""Images in, response records out: the scorer behind the batcher, and the shared decision code.

Scoring runs in the batcher's worker thread (``score_batch``); turning a score and map
into a record (``records``: ``deploy.decisions.decide``, as ``defectkit predict`` does,
plus the optional mask and heat-map PNGs) runs in the request's own thread, so PNG
encoding never holds up the next forward pass.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .. import __version__
from ..deploy.decisions import decide, overlay_image
from .batcher import DynamicBatcher
from .errors import ServeError
from .metrics import ServiceMetrics
from .settings import ServeSettings


@dataclass
class Job:
    """One decoded image waiting to be scored; ``display`` keeps its preprocessed image (for a heat map)."""

    image: np.ndarray
    display: bool = False


@dataclass
class Scored:
    score: float
    amap: np.ndarray
    display: Optional[np.ndarray] = None


def png_base64(image: Any) -> str:
    """A PIL image or a uint8 / bool array as base64-encoded PNG bytes."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image.astype(np.uint8) * 255 if image.dtype == bool else image)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


class InferenceService:
    """A :class:`~defectkit.deploy.scorer.Scorer` served with dynamic batching and metrics."""

    def __init__(self, scorer, settings: ServeSettings):
        self.scorer = scorer
        self.settings = settings
        self.thresholds = scorer.thresholds
        self.colour_scale = self.thresholds.colour_scale() if self.thresholds is not None else None
        self.batcher = DynamicBatcher(
            self.score_batch, settings.max_batch, settings.max_wait_ms / 1000.0, settings.queue_size
        )
        self.metrics = ServiceMetrics(settings.max_batch, queue_depth=self.batcher.depth)
        self.batcher.on_batch = self.metrics.observe_batch

    # ---- worker thread ---------------------------------------------------------------
    def score_batch(self, jobs: List[Job]) -> List[Any]:
        """Preprocess and score ``jobs`` in one forward pass (``Scorer.load_arrays`` + ``score``)."""
        results: List[Any] = [None] * len(jobs)
        batch, kept, errors = self.scorer.load_arrays([j.image for j in jobs])
        for i, reason in errors:
            results[i] = ServeError(422, reason)
        if kept:
            scores, maps = self.scorer.score(batch)
            displays = self.scorer.display_images(batch) if any(jobs[i].display for i in kept) else None
            for j, i in enumerate(kept):
                shown = displays[j] if displays is not None and jobs[i].display else None
                results[i] = Scored(float(scores[j]), maps[j], shown)
        return results

    # ---- request threads -------------------------------------------------------------
    def record(
        self,
        scored: Scored,
        width: int,
        height: int,
        mask: bool = False,
        heatmap: bool = False,
        name: Optional[str] = None,
    ) -> Dict[str, Any]:
        """The answer for one image (docs/serving.md): the fields of a ``predict`` record, plus sizes."""
        normalised = None
        if self.thresholds is not None:
            values = self.thresholds.normalised([scored.score])
            normalised = None if values is None else float(values[0])
        decision = decide(scored.score, scored.amap, self.thresholds, normalised)
        out: Dict[str, Any] = {
            "file": name,
            "score": decision.score,
            "normalized_score": decision.normalised_score,
            "label": decision.label,
            "threshold": decision.threshold,
            "pixel_threshold": decision.pixel_threshold,
            "boxes": decision.boxes,
            "width": int(width),
            "height": int(height),
            "map_size": int(self.scorer.output_size),
        }
        if mask:
            out["mask"] = None if decision.mask is None else png_base64(decision.mask)
        if heatmap:
            out["heatmap"] = (
                None
                if scored.display is None
                else png_base64(overlay_image(scored.display, scored.amap, decision.mask, self.colour_scale))
            )
        return out

    def records(
        self,
        scored: Sequence[Scored],
        sizes: Sequence[Any],
        names: Sequence[Optional[str]],
        mask: bool = False,
        heatmap: bool = False,
    ) -> List[Dict[str, Any]]:
        return [self.record(s, w, h, mask, heatmap, n) for s, (w, h), n in zip(scored, sizes, names)]

    # ---- what the model is -----------------------------------------------------------
    def describe(self) -> Dict[str, Any]:
        """``GET /model``: the scorer's own description (``Scorer.describe``), thresholds and versions."""
        describe = getattr(self.scorer, "describe", None)
        info: Dict[str, Any] = dict(describe()) if callable(describe) else {}
        info.setdefault("method", self.scorer.method)
        info.setdefault("output_size", int(self.scorer.output_size))
        t = self.thresholds
        info["thresholds"] = None if t is None else {**t.summary(), "description": t.describe()}
        info["name"] = self.settings.model_name
        info["defectkit_version"] = __version__
        info["limits"] = {
            "max_bytes": self.settings.max_bytes,
            "max_pixels": self.settings.max_pixels,
            "max_files": self.settings.max_files,
            "max_batch": self.settings.max_batch,
            "max_wait_ms": self.settings.max_wait_ms,
            "queue_size": self.settings.queue_size,
        }
        return info
