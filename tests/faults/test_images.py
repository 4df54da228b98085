"""Image files: every format a camera or an editor leaves is read the same way, and every
file that cannot be used is named with its reason, never dropped without a word."""

from __future__ import annotations

import csv
import time

import pytest

from defectkit.data import load_images
from defectkit.models import load_model

from .conftest import BAD_IMAGE_REASONS, SMALL, bad_images, readable_images


@pytest.fixture
def mixed(category, tmp_path):
    source = category / "train" / "good" / "000.png"
    good = readable_images(tmp_path / "mixed", source)
    bad = bad_images(tmp_path / "mixed", source)
    return tmp_path / "mixed", good, bad


def test_every_readable_format_is_scored_and_every_bad_file_is_named(mixed, model_file):
    folder, good, bad = mixed
    model = load_model(model_file, device="cpu")
    files = sorted(folder.iterdir())
    t0 = time.perf_counter()
    batch, kept, errors = load_images(files, model.preprocess, on_error="skip")
    assert time.perf_counter() - t0 < 10  # the 100000 x 100000 header is refused, not decoded
    assert sorted(p.name for p in kept) == sorted(p.name for p in good.values())
    assert batch.shape == (len(good), 3, 64, 64)
    reasons = {path.name: reason for path, reason in errors}
    assert sorted(reasons) == sorted(p.name for p in bad.values())
    for kind, word in BAD_IMAGE_REASONS.items():
        assert word in reasons[f"{kind}.png"], (kind, reasons[f"{kind}.png"])


def test_training_on_a_folder_of_mixed_formats_works(cli, mixed, tmp_path):
    folder, good, _ = mixed
    clean = tmp_path / "clean"
    clean.mkdir()
    for path in good.values():
        path.rename(clean / path.name)
    result = cli("train", "--data", clean, "--out", tmp_path / "m.pt", *SMALL)
    assert result.code == 0, result.err
    assert f"on {len(good)} normal images" in result.out


@pytest.mark.parametrize("kind", sorted(BAD_IMAGE_REASONS))
def test_training_names_a_bad_training_image(cli, category, tmp_path, kind):
    folder = tmp_path / "train_good"
    readable_images(folder, category / "train" / "good" / "000.png")
    bad = bad_images(tmp_path / "bad", category / "train" / "good" / "000.png")[kind]
    bad.rename(folder / bad.name)
    result = cli("train", "--data", folder, "--out", tmp_path / "m.pt", *SMALL)
    assert result.code == 2 and "Traceback" not in result.err
    (line,) = result.error_lines
    assert f"{kind}.png" in line and BAD_IMAGE_REASONS[kind] in line
    assert not (tmp_path / "m.pt").exists()


def test_predict_scores_the_readable_files_and_names_the_rest(cli, mixed, model_file, tmp_path):
    folder, good, bad = mixed
    out = tmp_path / "pred"
    result = cli("predict", "--model", model_file, "--input", folder, "--out", out)
    assert result.code == 0, result.err
    for path in bad.values():
        assert path.name in result.err
    with open(out / "predictions.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["score"] not in ("", None)]  # scored files only
    assert sorted(r["file"].rsplit("/", 1)[-1] for r in rows) == sorted(p.name for p in good.values())
