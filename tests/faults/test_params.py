"""Parameters: --param values are checked against the method's constructor (types) and its
check_params (ranges), image sizes against what the backbone's feature maps need, and
method names are accepted in any case; every refusal comes before any data is read."""

from __future__ import annotations

import csv

import pytest

from defectkit.models import available_methods, load_model
from defectkit.models.factory import build_model, resolve_variants

from .conftest import SMALL


def _refused(cli, tmp_path, *argv) -> str:
    """Run ``train`` on a data folder that does not exist: a parameter refused first is the only error."""
    result = cli("train", "--data", tmp_path / "no_data_here", "--out", tmp_path / "m.pt", *SMALL, *argv)
    assert result.code == 2 and "Traceback" not in result.err
    (line,) = result.error_lines
    assert "no_data_here" not in line, "the data was looked at before the parameter was checked"
    assert not (tmp_path / "m.pt").exists()
    return line


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--param", "coreset_ratio=abc"], "parameter coreset_ratio of patchcore must be a float, got 'abc'"),
        (["--param", "strides=oops"], "parameter strides of patchcore must be a tuple of ints, got 'oops'"),
        (["--param", "stage_balance=3"], "parameter stage_balance of patchcore must be true or false, got 3"),
        (["--param", "num_neighbours=0"], "num_neighbours must be >= 1, got 0"),
        (["--param", "coreset_ratio=1.5"], "coreset_ratio must be in (0, 1], got 1.5"),
        (["--param", "patch_size=2"], "patch_size must be an odd int >= 1"),
        (["--param", "strides=(8, 8)"], "strides lists a stride twice"),
        (["--image-size", "7"], "image size 7 px is too small for patchcore"),
        (["--image-size", "64", "--crop-size", "16"], "at least 32 px (--crop-size)"),
    ],
)
def test_bad_values_are_refused_before_the_data_is_read(cli, tmp_path, argv, expected):
    assert expected in _refused(cli, tmp_path, *argv)


@pytest.mark.parametrize(
    "method, param, value, expected",
    [
        ("simplenet", "epochs", "ten", "parameter epochs of simplenet must be an int, got 'ten'"),
        ("simplenet", "noise_std", -0.1, "noise_std must be > 0"),
        ("realnet", "disc_hidden", "wide", "parameter disc_hidden of realnet must be a tuple of ints"),
        ("realnet", "recon_ratio", 0, "recon_ratio must be in (0, 1]"),
        ("prn", "batch_mix", (1, 1), "parameter batch_mix of prn must be a tuple of 3 ints"),
        ("prn", "top_k", 0, "top_k must be >= 1"),
        ("mlff", "max_train_minutes", "long", "parameter max_train_minutes of mlff must be a float or None"),
        ("mlff", "width", 0, "width must be >= 1"),
    ],
)
def test_every_method_checks_types_and_ranges(method, param, value, expected):
    with pytest.raises(ValueError) as info:
        build_model(method, {param: value}, device="cpu")
    assert expected in str(info.value)


def test_the_minimum_size_is_the_coarsest_feature_map():
    for method in ("patchcore", "simplenet", "realnet", "prn", "mlff"):
        assert build_model(method, None, image_size=32, device="cpu").min_image_size == 32
        with pytest.raises(ValueError, match="at least 32 px"):
            build_model(method, None, image_size=31, device="cpu")
    # strides reaching stride 32 need 64 px: 2x2 cells there
    with pytest.raises(ValueError, match="stride 32.*at least 64 px"):
        build_model("patchcore", {"strides": (16, 32)}, image_size=48, device="cpu")
    with pytest.raises(ValueError, match="multiple of output_stride 4"):
        build_model("mlff", None, image_size=66, device="cpu")


def test_lists_become_tuples_and_defaults_pass():
    assert build_model("patchcore", {"strides": [8, 16]}, device="cpu").strides == (8, 16)
    for method in available_methods():
        build_model(method, None, device="cpu")  # every default satisfies its own annotation


def test_method_names_in_any_case(cli, category, tmp_path):
    model = tmp_path / "m.pt"
    result = cli(
        "train",
        "--method",
        "PatchCore",
        "--data",
        category,
        "--out",
        model,
        *SMALL,
        "--param",
        "PatchCore.coreset_ratio=0.5",
    )
    assert result.code == 0, result.err
    loaded = load_model(model, device="cpu")
    assert loaded.method == "patchcore" and loaded.coreset_ratio == 0.5
    assert [(v, m) for v, m, _ in resolve_variants(["PATCHCORE[coreset_ratio=0.5]", "patchcore"])] == [
        ("patchcore[coreset_ratio=0.5]", "patchcore"),
        ("patchcore", "patchcore"),
    ]


def test_benchmark_rows_record_the_registered_name(cli, category, tmp_path):
    out = tmp_path / "b"
    result = cli("benchmark", "--methods", "PatchCore", "--data", category, "--seeds", "0", "--out", out, *SMALL)
    assert result.code == 0, result.err
    with open(out / "results.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["method"] == "patchcore" and row["variant"] == "patchcore"
