"""Data layouts: training needs only normal images, so the test side of a category (missing,
or with a problem such as a lost mask) never stops `train`; `test` reports such problems."""

from __future__ import annotations

import shutil

from defectkit.data import load_dataset

from .conftest import SMALL, copy_category


def test_train_on_a_category_with_only_train_good(cli, category, tmp_path):
    root = copy_category(category, tmp_path / "cat")
    shutil.rmtree(root / "test")
    shutil.rmtree(root / "ground_truth")
    result = cli("train", "--data", root, "--out", tmp_path / "m.pt", *SMALL)
    assert result.code == 0, result.err
    assert "on 6 normal images of 'cat'" in result.out


def test_train_ignores_a_missing_test_mask_and_test_reports_it(cli, category, tmp_path):
    root = copy_category(category, tmp_path / "cat")
    sample = next(s for s in load_dataset(root).test if s.mask_path is not None)
    sample.mask_path.unlink()
    model = tmp_path / "m.pt"
    assert cli("train", "--data", root, "--out", model, *SMALL).code == 0
    result = cli("test", "--model", model, "--data", root, "--out", tmp_path / "run")
    assert result.code == 2
    (line,) = result.error_lines
    assert str(sample.path) in line and "no ground-truth mask" in line


def test_training_images_of_each_layout(category, tmp_path):
    from defectkit.data import training_images

    items, name = training_images(category)
    assert name == category.name and len(items) == 6 and all(s.label == 0 for s in items)
    rgb = tmp_path / "cat3d" / "train" / "good" / "rgb"
    shutil.copytree(category / "train" / "good", rgb)
    assert len(training_images(tmp_path / "cat3d")[0]) == 6  # MVTec 3D-AD, no test split
    assert len(training_images(category / "train" / "good")[0]) == 6  # a plain folder


def test_a_folder_without_training_images_is_named(cli, tmp_path):
    (tmp_path / "empty" / "train" / "good").mkdir(parents=True)
    result = cli("train", "--data", tmp_path / "empty", "--out", tmp_path / "m.pt", *SMALL)
    assert result.code == 2
    (line,) = result.error_lines
    assert "no training images" in line and str(tmp_path / "empty") in line
