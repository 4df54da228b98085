"""Validation-based epoch selection shared by the trained methods."""

from defectkit.models.selection import BestEpoch


def test_keeps_best_epoch_weights_and_stops_after_patience():
    best = BestEpoch(patience_epochs=2)
    snapshots = []

    def snap(tag):
        snapshots.append(tag)
        return {"w": tag}

    assert best.update(1, {"score": 0.5, "aupro": 0.1}, lambda: snap(1))
    assert best.update(2, {"score": 0.7, "aupro": 0.3}, lambda: snap(2))
    assert not best.update(3, {"score": 0.6}, lambda: snap(3))
    assert snapshots == [1, 2]  # weights copied only on improvement
    assert not best.should_stop(3)
    assert best.should_stop(4)
    loaded = {}
    assert best.restore(loaded.update, epochs_run=4) == (2, "best validation score")
    assert loaded == {"w": 2}
    assert best.summary == {"aupro": 0.3, "score": 0.7}


def test_without_validation_the_last_epoch_stays():
    best = BestEpoch(patience_epochs=3)
    assert not best.should_stop(10)
    assert best.restore(lambda state: None, epochs_run=7) == (7, "last epoch (no validation split)")
