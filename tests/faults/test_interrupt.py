"""Interruption: Ctrl-C during feature extraction, training or saving exits with 130 and
"interrupted", leaves no model file, temporary file or half-written cache entry, and a
re-run afterwards trains the same model as an uninterrupted run."""

from __future__ import annotations

import numpy as np
import pytest

from defectkit.data import load_dataset
from defectkit.features import extractor
from defectkit.models import load_model
from defectkit.models.simplenet import model as simplenet_model
from defectkit.utils import atomic

#: SimpleNet with a real epoch loop, small enough for a test; the feature cache is on.
SIMPLENET = ["--method", "simplenet", "--image-size", "64", "--param", "epochs=2", "--param", "feature_batch_size=256"]


def _interrupt_on_call(monkeypatch, module, name, n):
    real = getattr(module, name)
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)
    return calls


def _interrupt_in_epoch(monkeypatch, epoch):
    real = simplenet_model.train_epochs

    def wrapped(run_epoch, *args, **kwargs):
        def one(e):
            if e == epoch:
                raise KeyboardInterrupt
            return run_epoch(e)

        return real(one, *args, **kwargs)

    monkeypatch.setattr(simplenet_model, "train_epochs", wrapped)


def _interrupt_saving(monkeypatch):
    """Ctrl-C after the model's temporary file is written, just before it is renamed into place."""
    real = atomic.os.replace

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith("model.pt"):
            raise KeyboardInterrupt
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "replace", replace)


STAGES = {
    "feature extraction": lambda mp: _interrupt_on_call(mp, extractor, "load_images", 2),
    "training": lambda mp: _interrupt_in_epoch(mp, 2),
    "saving": _interrupt_saving,
}


def _leftovers(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp")


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_interrupted_then_rerun(cli, category, tmp_path, monkeypatch, stage):
    cache = tmp_path / "cache"
    out = tmp_path / "models" / "model.pt"
    argv = ["train", "--data", category, "--out", out, "--cache-dir", cache, "--batch-size", "2", *SIMPLENET]
    with monkeypatch.context() as patch:
        STAGES[stage](patch)
        result = cli(*argv)
    assert result.code == 130 and "defectkit: interrupted" in result.err and "Traceback" not in result.err
    assert not out.exists()
    assert _leftovers(tmp_path) == []  # no temporary model file, no half cache entry

    again = cli(*argv)
    assert again.code == 0, again.err
    reference = tmp_path / "reference.pt"
    assert cli("train", "--data", category, "--out", reference, "--no-cache", "--batch-size", "2", *SIMPLENET).code == 0
    images = [s.path for s in load_dataset(category).test]
    scores, _ = load_model(out, device="cpu").predict(images)
    expected, _ = load_model(reference, device="cpu").predict(images)
    assert np.array_equal(scores, expected)
