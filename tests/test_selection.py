"""The shared epoch loop and best-epoch selection: one meaning of patience for every method."""

import pytest

from defectkit.models.components.selection import BestEpoch
from defectkit.models.components.training import FIT_INFO_KEYS, train_epochs
from defectkit.models.components.validation import validation_scores


def test_keeps_best_epoch_weights_and_stops_after_patience_validations():
    best = BestEpoch(patience=2)
    snapshots = []

    def snap(tag):
        snapshots.append(tag)
        return {"w": tag}

    assert best.update(1, {"score": 0.5, "aupro": 0.1}, lambda: snap(1))
    assert best.update(2, {"score": 0.7, "aupro": 0.3}, lambda: snap(2))
    assert not best.update(3, {"score": 0.6}, lambda: snap(3))
    assert snapshots == [1, 2]  # weights copied only on improvement
    assert not best.should_stop()
    assert not best.update(4, {"score": 0.7}, lambda: snap(4))  # a tie is no improvement
    assert best.should_stop()
    loaded = {}
    assert best.restore(loaded.update, epochs_run=4) == (2, "best validation score")
    assert loaded == {"w": 2}
    assert best.summary == {"aupro": 0.3, "score": 0.7}


def test_without_validation_the_last_epoch_stays():
    best = BestEpoch(patience=3)
    assert not best.should_stop()
    assert best.restore(lambda state: None, epochs_run=7) == (7, "last epoch (no validation split)")


def _loop(scores, **kwargs):
    """Run the loop on a fake model whose weight is the epoch number and whose validation
    score at epoch e is ``scores[e - 1]``."""
    state = {"epoch": 0, "validated": []}

    def run_epoch(epoch):
        state["epoch"] = epoch
        return {"loss": 1.0 / epoch}

    def validate():
        state["validated"].append(state["epoch"])
        return {"score": scores[state["epoch"] - 1]}

    restored = {}
    summary = train_epochs(run_epoch, validate, lambda: {"w": state["epoch"]}, restored.update, **kwargs)
    return summary, state["validated"], restored


def test_patience_counts_validations_not_epochs():
    scores = [0.1, 0.5, 0.4, 0.3, 0.2, 0.9, 0.95, 0.99]
    summary, validated, restored = _loop(scores, epochs=8, val_every=2, patience=2)
    # validations at epochs 2, 4, 6, 8: 0.5 (best), 0.3, 0.9 (best), 0.99 (best): never two bad in a row
    assert validated == [2, 4, 6, 8] and summary["stop_reason"] == "epochs"
    assert summary["best_epoch"] == 8 and restored == {"w": 8}
    summary, validated, restored = _loop([0.1, 0.5, 0.4, 0.3, 0.2, 0.1, 0.9, 0.9], epochs=8, val_every=2, patience=2)
    # 0.5 at epoch 2, then 0.3 (4) and 0.1 (6): two validations without improvement -> stop after epoch 6
    assert validated == [2, 4, 6] and summary["stop_reason"] == "patience" and summary["epochs_run"] == 6
    assert summary["best_epoch"] == 2 and summary["best_score"] == 0.5 and restored == {"w": 2}


def test_last_epoch_is_always_validated_and_curve_has_one_entry_per_epoch():
    summary, validated, _ = _loop([0.1, 0.2, 0.3, 0.4, 0.5], epochs=5, val_every=2)
    assert validated == [2, 4, 5]
    assert [c["epoch"] for c in summary["curve"]] == [1, 2, 3, 4, 5]
    assert "score" in summary["curve"][1] and "score" not in summary["curve"][0]
    assert set(FIT_INFO_KEYS) - {"train_seconds"} <= set(summary)


def test_time_budget_and_no_validation():
    summary, validated, restored = _loop([0.1] * 5, epochs=5, max_seconds=0.0)
    assert summary["stop_reason"] == "time budget" and summary["epochs_run"] == 1
    summary = train_epochs(lambda e: {"loss": 0.0}, None, dict, lambda s: None, epochs=3)
    assert summary["best_epoch"] == 3 and summary["best_score"] is None
    assert summary["selection"] == "last epoch (no validation split)"
    with pytest.raises(ValueError, match="patience"):
        train_epochs(lambda e: {}, None, dict, lambda s: None, epochs=3, patience=-1)


def test_validation_scores_is_the_plain_mean_of_the_chosen_metrics():
    import numpy as np

    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    masks = np.zeros((4, 4, 4), bool)
    masks[2:, :2, :2] = True
    maps = np.random.default_rng(0).random((4, 4, 4))
    three = validation_scores(labels, scores, masks, maps)
    assert three["image_auroc"] == 0.75
    assert three["score"] == pytest.approx((three["image_auroc"] + three["pixel_auroc"] + three["aupro"]) / 3)
    four = validation_scores(labels, scores, masks, maps, ("image_auroc", "pixel_auroc", "aupro", "pixel_ap"))
    assert four["score"] == pytest.approx(
        np.mean([four[k] for k in ("image_auroc", "pixel_auroc", "aupro", "pixel_ap")])
    )
    with pytest.raises(ValueError, match="unknown validation metrics"):
        validation_scores(labels, scores, masks, maps, ("accuracy",))
