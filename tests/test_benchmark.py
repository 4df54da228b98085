"""Tests for defectkit.benchmark: results files, summaries, parameter checks, no silent overwrite."""

import csv
import json
import math

import numpy as np
import pytest

from defectkit.benchmark import (
    LEADING_COLUMNS,
    format_table,
    params_for,
    run_benchmark,
    summarise,
)
from defectkit.data import make_demo_dataset

REQUIRED = [
    "method", "backbone", "category", "seed", "image_size", "image_auroc", "pixel_auroc", "aupro",
    "pixel_ap", "train_seconds", "infer_ms_per_image", "peak_rss_mb",
]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    data = make_demo_dataset(root / "data", seed=1, n_train=5, n_test_good=2, n_test_defect=3, size=64)
    out = root / "results"
    rows = run_benchmark(
        ["patchcore"], [data], backbone="efficientnet_lite0", seeds=[0, 1], image_size=64,
        device="cpu", out_dir=out, method_params={"coreset_ratio": 0.2}, progress=False,
        command="pytest benchmark",
    )
    return data, out, rows


def test_results_csv_has_required_leading_columns_and_one_row_per_seed(bench):
    _, out, rows = bench
    assert list(LEADING_COLUMNS) == REQUIRED
    with open(out / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        csv_rows = list(reader)
    assert header[: len(REQUIRED)] == REQUIRED
    assert len(csv_rows) == 2 and len(rows) == 2
    assert [r["seed"] for r in csv_rows] == ["0", "1"]
    for r in csv_rows:
        assert r["method"] == "patchcore" and r["backbone"] == "efficientnet_lite0"
        assert r["category"] == "textured_part" and r["image_size"] == "64"
        for m in ("image_auroc", "pixel_auroc", "aupro", "pixel_ap", "image_f1_max", "pixel_f1_max"):
            assert 0.0 <= float(r[m]) <= 1.0, m
        for c in ("train_seconds", "infer_ms_per_image", "peak_rss_mb", "throughput_img_s"):
            assert float(r[c]) > 0, c
        assert r["torch_version"] and r["defectkit_version"] and r["machine"] and r["timestamp"]
        assert json.loads(r["method_params"]) == {"coreset_ratio": 0.2}


def test_summary_files(bench):
    _, out, rows = bench
    text = (out / "summary.md").read_text()
    assert "| patchcore | efficientnet_lite0 | textured_part | 0 1 |" in text
    assert "pytest benchmark" in text and "seeds: 0, 1" in text and "ru_maxrss" in text
    payload = json.loads((out / "results.json").read_text())
    assert len(payload["rows"]) == 2 and payload["seeds"] == [0, 1]
    assert "train_seconds" in payload["rows"][0]["fit_info"]


def test_summary_mean_std_match_numpy(bench):
    _, _, rows = bench
    (s,) = summarise(rows)
    assert s["seeds"] == [0, 1] and s["n_seeds"] == 2
    for m in ("image_auroc", "pixel_auroc", "aupro", "train_seconds", "peak_rss_mb"):
        values = np.array([r[m] for r in rows], dtype=float)
        assert s[f"{m}_mean"] == pytest.approx(values.mean())
        assert s[f"{m}_std"] == pytest.approx(values.std(ddof=1))


def test_refuses_to_overwrite_results(bench):
    data, out, _ = bench
    before = (out / "results.csv").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        run_benchmark(["patchcore"], [data], seeds=[0], image_size=64, out_dir=out, progress=False)
    assert (out / "results.csv").read_bytes() == before


def _row(method, category, seed, auroc, cat_offset=0.0):
    return {
        "method": method, "backbone": "b", "category": category, "seed": seed, "image_auroc": auroc + cat_offset,
        "pixel_auroc": 0.9, "aupro": 0.8, "pixel_ap": float("nan"), "image_f1_max": 0.5, "pixel_f1_max": 0.4,
        "train_seconds": 10.0 + seed, "infer_ms_per_image": 5.0, "peak_rss_mb": 100.0,
    }


def test_summarise_and_format_table_by_hand():
    rows = [_row("pc", c, s, a, off) for c, off in (("bottle", 0.0), ("cable", -0.1)) for s, a in ((0, 0.995), (1, 0.997))]
    summary = summarise(rows)
    assert [r["category"] for r in summary] == ["bottle", "cable", "mean"]
    bottle, _, mean = summary
    assert bottle["image_auroc_mean"] == pytest.approx(0.996)
    assert bottle["image_auroc_std"] == pytest.approx(np.std([0.995, 0.997], ddof=1))
    assert math.isnan(bottle["pixel_ap_mean"])
    assert mean["image_auroc_mean"] == pytest.approx(np.mean([0.995, 0.997, 0.895, 0.897]))
    table = format_table(summary)
    lines = table.splitlines()
    assert lines[0].startswith("| method | backbone | category | seeds | I-AUROC")
    assert "| pc | b | bottle | 0 1 | 99.6 ± 0.1 | 90.0 ± 0.0 | 80.0 ± 0.0 | - |" in table
    assert len(lines) == 2 + 3


def test_single_seed_std_is_zero():
    (s,) = summarise([_row("pc", "bottle", 0, 0.9)])
    assert s["image_auroc_std"] == 0.0


def test_method_params_are_checked():
    assert params_for("patchcore", {"coreset_ratio": 0.1}) == {"coreset_ratio": 0.1}
    assert params_for("patchcore", {"patchcore.num_neighbours": 3}) == {"num_neighbours": 3}
    with pytest.raises(ValueError, match="unknown parameter 'coreset_ration'"):
        params_for("patchcore", {"coreset_ration": 0.1})
    with pytest.raises(ValueError, match="own option"):
        params_for("patchcore", {"image_size": 128})


def test_bad_inputs_fail_before_any_run(tmp_path):
    with pytest.raises(KeyError, match="unknown method"):
        run_benchmark(["nosuch"], [tmp_path], seeds=[0], progress=False)
    with pytest.raises(ValueError, match="not found|neither"):
        run_benchmark(["patchcore"], [tmp_path / "missing"], seeds=[0], progress=False)
    assert not any(tmp_path.iterdir())
