"""Model selection on the validation split: keep the epoch with the best validation score.

Every trained method scores held-out normal images plus synthetic anomalies after some
epochs and keeps the weights of the best one (the official SimpleNet/RealNet code keeps
the best epoch on the *test* set; docs/protocol.md#validation forbids that). One tracker
keeps that bookkeeping identical across methods.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

SUMMARY_KEYS = ("image_auroc", "pixel_auroc", "aupro", "pixel_ap", "score")


class BestEpoch:
    """Best validation score so far, its epoch, metrics and a snapshot of the weights.

    ``patience`` counts validations: training should stop once that many validations in a
    row did not improve on the best (0: never stop early).
    """

    def __init__(self, patience: int = 0):
        self.patience = int(patience)
        self.epoch = 0
        self.score = float("-inf")
        self.metrics: Dict[str, Any] = {}
        self.state: Optional[Dict[str, Any]] = None
        self.since_best = 0

    def update(self, epoch: int, metrics: Dict[str, Any], snapshot: Callable[[], Dict[str, Any]]) -> bool:
        """Record one validation (``metrics["score"]``, higher is better); snapshot only on improvement."""
        if metrics["score"] > self.score:
            self.epoch, self.score, self.metrics, self.state = epoch, metrics["score"], dict(metrics), snapshot()
            self.since_best = 0
            return True
        self.since_best += 1
        return False

    def should_stop(self) -> bool:
        """True once ``patience`` validations passed without improvement (0: never)."""
        return bool(self.patience) and self.state is not None and self.since_best >= self.patience

    def restore(self, load_state: Callable[[Dict[str, Any]], None], epochs_run: int) -> Tuple[int, str]:
        """Load the best weights; without any validation the last epoch stays. -> (epoch, how chosen)."""
        if self.state is None:
            return epochs_run, "last epoch (no validation split)"
        load_state(self.state)
        return self.epoch, "best validation score"

    @property
    def summary(self) -> Dict[str, Any]:
        return {k: self.metrics[k] for k in SUMMARY_KEYS if k in self.metrics}
