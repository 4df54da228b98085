"""The one epoch loop every trained method runs: epochs, validation, best epoch, early stop.

A method hands in what differs (one epoch of its own training steps, one validation
pass, and how to snapshot and restore its weights); the loop owns what must mean the
same everywhere, so ``patience``, ``val_every`` and ``fit_info_`` read alike for
SimpleNet, RealNet, PRN and MLFF:

* validation after every ``val_every``-th epoch and after the last one;
* ``patience``: validations in a row without improvement before stopping (0: never);
* ``max_seconds``: a wall-time budget for the loop, checked after each epoch;
* the weights of the best validation are restored at the end (the last epoch's
  without a validation split).

The summary it returns is the documented ``fit_info_`` schema (docs/protocol.md#fit-info):
``epochs_run``, ``best_epoch``, ``best_score``, ``curve`` (one entry per epoch: the
losses, and the validation metrics on validated epochs), ``stop_reason``
("epochs", "patience" or "time budget"), plus ``selection``, ``val_metrics``,
``loop_seconds`` and ``validation_seconds``.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Mapping, Optional

from ...utils.progress import progress as progress_bar
from .selection import BestEpoch

#: fit_info_ keys every trained method writes (train_seconds is added by ``fit``)
FIT_INFO_KEYS = ("epochs_run", "best_epoch", "best_score", "curve", "stop_reason", "train_seconds")


def check_loop_params(model) -> None:
    """ValueError for loop settings no trained method can use (``epochs``, ``val_every``,
    ``patience``, ``val_fraction``), named as the user typed them."""
    if model.epochs < 1 or model.val_every < 1:
        raise ValueError(f"epochs and val_every must be >= 1, got {model.epochs} and {model.val_every}")
    if getattr(model, "patience", 0) < 0:
        raise ValueError(f"patience must be >= 0 (0: never stop early), got {model.patience}")
    if not 0.0 <= model.val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {model.val_fraction}")


def train_epochs(
    run_epoch: Callable[[int], Mapping[str, float]],
    validate: Optional[Callable[[], Mapping[str, float]]],
    snapshot: Callable[[], Dict[str, Any]],
    restore: Callable[[Dict[str, Any]], None],
    *,
    epochs: int,
    val_every: int = 1,
    patience: int = 0,
    max_seconds: Optional[float] = None,
    desc: str = "train",
    progress: bool = False,
) -> Dict[str, Any]:
    """Run up to ``epochs`` epochs and keep the best validated weights -> the fit summary.

    ``run_epoch(epoch)`` trains one epoch (1-based) and returns its mean losses;
    ``validate()`` (None: no validation split) returns metrics with a ``score``;
    ``snapshot()`` copies the weights, ``restore(state)`` loads such a copy.
    """
    if epochs < 1 or val_every < 1 or patience < 0:
        raise ValueError(f"need epochs >= 1, val_every >= 1 and patience >= 0; got {epochs}, {val_every}, {patience}")
    start = time.perf_counter()
    best = BestEpoch(patience)
    curve = []
    stop_reason = "epochs"
    val_seconds = 0.0
    epochs_run = 0
    with progress_bar(range(1, epochs + 1), desc=desc, unit="epoch", enabled=progress) as bar:
        for epoch in bar:
            losses = dict(run_epoch(epoch))
            epochs_run = epoch
            entry: Dict[str, Any] = {"epoch": epoch, **losses}
            postfix = {k: f"{v:.4f}" for k, v in losses.items()}
            validated = validate is not None and (epoch % val_every == 0 or epoch == epochs)
            if validated:
                tv = time.perf_counter()
                metrics = dict(validate())
                val_seconds += time.perf_counter() - tv
                entry.update(metrics)
                best.update(epoch, metrics, snapshot)
                postfix.update(val=f"{metrics['score']:.4f}", best=str(best.epoch))
            entry["seconds"] = time.perf_counter() - start
            curve.append(entry)
            bar.set_postfix(postfix)
            if validated and best.should_stop():
                stop_reason = "patience"
                break
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                stop_reason = "time budget"
                break
    best_epoch, selection = best.restore(restore, epochs_run)
    return {
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "best_score": best.score if best.state is not None else None,
        "curve": curve,
        "stop_reason": stop_reason,
        "selection": selection,
        "val_metrics": best.summary,
        "loop_seconds": time.perf_counter() - start,
        "validation_seconds": val_seconds,
    }
