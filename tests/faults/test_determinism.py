"""Determinism: the same data, method, parameters and seed give byte-identical scores,
whether run twice in one process or with the feature cache cold or warm."""

from __future__ import annotations

import pytest

from .conftest import SMALL


@pytest.mark.parametrize(
    "method_args",
    [
        ["--method", "patchcore"],
        ["--method", "simplenet", "--param", "epochs=2", "--param", "feature_batch_size=256"],
    ],
    ids=["patchcore", "simplenet"],
)
def test_same_seed_same_scores(cli, category, tmp_path, method_args):
    runs = []
    for i, cache in enumerate(["--no-cache", "--cache-dir", "--cache-dir"]):
        model = tmp_path / f"m{i}.pt"
        cache_args = [cache] if cache == "--no-cache" else [cache, tmp_path / "cache"]  # cold, then warm
        train = cli(
            "train", "--data", category, "--out", model, "--seed", "3", "--image-size", "64", *cache_args, *method_args
        )
        assert train.code == 0, train.err
        out = tmp_path / f"run{i}"
        assert cli("test", "--model", model, "--data", category, "--out", out, "--no-cache").code == 0
        runs.append((out / "per_image.csv").read_bytes())
    assert runs[0] == runs[1] == runs[2]
    assert runs[0].count(b"\n") == 7  # header + 6 test images


def test_another_seed_changes_a_seeded_method(cli, category, tmp_path):
    scores = []
    for seed in ("0", "1"):
        model = tmp_path / f"s{seed}.pt"
        assert (
            cli(
                "train",
                "--data",
                category,
                "--out",
                model,
                "--seed",
                seed,
                *SMALL,
                "--method",
                "simplenet",
                "--param",
                "epochs=2",
                "--param",
                "feature_batch_size=256",
            ).code
            == 0
        )
        out = tmp_path / f"t{seed}"
        assert cli("test", "--model", model, "--data", category, "--out", out).code == 0
        scores.append((out / "per_image.csv").read_bytes())
    assert scores[0] != scores[1]  # the check above could not pass by ignoring the seed
