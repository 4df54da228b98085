"""Model selection on the validation split: keep the epoch with the best validation score.

Every trained method scores held-out normal images plus synthetic anomalies after some
epochs and keeps the weights of the best one (the official SimpleNet/RealNet code keeps
the best epoch on the *test* set; PROTOCOL.md forbids that). One tracker keeps that
bookkeeping identical across methods.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

SUMMARY_KEYS = ("image_auroc", "pixel_auroc", "aupro", "pixel_ap", "score")


class BestEpoch:
    """Best validation score so far, its epoch, metrics and a snapshot of the weights."""

    def __init__(self, patience_epochs: int = 0):
        self.patience_epochs = patience_epochs
        self.epoch = 0
        self.score = float("-inf")
        self.metrics: Dict[str, Any] = {}
        self.state: Optional[Dict[str, Any]] = None

    def update(self, epoch: int, metrics: Dict[str, Any], snapshot: Callable[[], Dict[str, Any]]) -> bool:
        """Record one validation (``metrics["score"]``, higher is better); snapshot only on improvement."""
        if metrics["score"] > self.score:
            self.epoch, self.score, self.metrics, self.state = epoch, metrics["score"], dict(metrics), snapshot()
            return True
        return False

    def should_stop(self, epoch: int) -> bool:
        """True once ``patience_epochs`` epochs passed without improvement (0: never)."""
        return bool(self.patience_epochs) and self.state is not None and epoch - self.epoch >= self.patience_epochs

    def restore(self, load_state: Callable[[Dict[str, Any]], None], epochs_run: int) -> Tuple[int, str]:
        """Load the best weights; without any validation the last epoch stays. -> (epoch, how chosen)."""
        if self.state is None:
            return epochs_run, "last epoch (no validation split)"
        load_state(self.state)
        return self.epoch, "best validation score"

    @property
    def summary(self) -> Dict[str, Any]:
        return {k: self.metrics[k] for k in SUMMARY_KEYS if k in self.metrics}
