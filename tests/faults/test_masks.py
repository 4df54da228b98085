"""Ground-truth masks: one whose size differs from its image's changes pixel metrics, so it
is reported with both files and sizes; --strict turns that into an error before scoring."""

from __future__ import annotations

import warnings

import pytest
from PIL import Image

from defectkit.data import load_dataset

from .conftest import SMALL, copy_category


@pytest.fixture
def wrong_mask(category, tmp_path):
    """A copy of the category with one mask saved at 100x60 instead of its image's 64x64."""
    root = copy_category(category, tmp_path / "cat")
    sample = next(s for s in load_dataset(root).test if s.mask_path is not None)
    Image.open(sample.mask_path).resize((100, 60), Image.Resampling.NEAREST).save(sample.mask_path)
    return root, sample


def test_a_mask_of_the_wrong_size_is_reported_with_both_sizes(cli, wrong_mask, model_file, tmp_path):
    root, sample = wrong_mask
    result = cli("test", "--model", model_file, "--data", root, "--out", tmp_path / "run")
    assert result.code == 0, result.err
    warning = [line for line in result.err.splitlines() if line.startswith("defectkit: warning:")]
    assert len(warning) == 1
    assert str(sample.mask_path) in warning[0] and str(sample.path) in warning[0]
    assert "100x60" in warning[0] and "64x64" in warning[0]
    assert "P-AUROC" in result.out  # still evaluated, as before


def test_strict_makes_it_an_error_before_scoring(cli, wrong_mask, model_file, tmp_path):
    root, sample = wrong_mask
    result = cli("test", "--model", model_file, "--data", root, "--out", tmp_path / "run", "--strict")
    assert result.code == 2
    (line,) = result.error_lines
    assert str(sample.mask_path) in line and "100x60" in line and "64x64" in line
    assert "I-AUROC" not in result.out and not (tmp_path / "run" / "metrics.json").exists()


def test_benchmark_strict_fails_before_the_first_run(cli, wrong_mask, tmp_path):
    root, sample = wrong_mask
    result = cli("benchmark", "--data", root, "--seeds", "0", "--out", tmp_path / "b", "--strict", *SMALL)
    assert result.code == 2 and str(sample.mask_path) in result.err
    assert not (tmp_path / "b" / "results.csv").exists()


def test_library_check(wrong_mask, category):
    from defectkit.data import MaskSizeError, MaskSizeWarning, check_mask_sizes

    root, sample = wrong_mask
    with pytest.warns(MaskSizeWarning, match="100x60"):
        assert check_mask_sizes(load_dataset(root).test) == 1
    with pytest.raises(MaskSizeError, match="64x64"):
        check_mask_sizes(load_dataset(root).test, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_mask_sizes(load_dataset(category).test, strict=True) == 0
