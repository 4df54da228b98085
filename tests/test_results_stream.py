"""results.csv as a stream (local engine, no Ray needed): rows are on disk as soon as they are
appended, read back exactly, a line cut short by a kill is dropped, and a failing run is
recorded while the grid goes on."""

from __future__ import annotations

import csv
import math
import shutil

import pytest

from defectkit.data import make_demo_dataset
from defectkit.engine.benchmark import run_benchmark
from defectkit.engine.results_stream import ResultsStream, read_rows, stream_columns


def test_appended_rows_are_on_disk_at_once_and_read_back_exactly(tmp_path):
    path = tmp_path / "results.csv"
    row = {
        "method": "patchcore",
        "variant": "patchcore",
        "category": "c",
        "seed": 3,
        "image_size": 64,
        "image_auroc": 0.1 + 0.2,
        "pixel_auroc": float("nan"),
        "crop_size": "",
        "feature_cache": False,
        "method_params": '{"k": 1}',
        "error": "",
    }
    with ResultsStream(path, stream_columns()) as stream:
        stream.append(row)
        on_disk = read_rows(path)  # while still open: flushed
    assert len(on_disk) == 1
    back = on_disk[0]
    assert back["image_auroc"] == 0.1 + 0.2 and math.isnan(back["pixel_auroc"])
    assert back["seed"] == 3 and back["crop_size"] == "" and back["feature_cache"] is False
    assert back["method_params"] == '{"k": 1}' and back["category"] == "c"


def test_a_line_cut_short_is_dropped(tmp_path):
    path = tmp_path / "results.csv"
    with ResultsStream(path, stream_columns()) as stream:
        for seed in (0, 1):
            stream.append({"method": "m", "category": "c", "seed": seed, "image_auroc": 0.5})
    text = path.read_text()
    path.write_text(text[: len(text) - len(text.splitlines()[-1]) // 2 - 1])
    assert [r["seed"] for r in read_rows(path)] == [0]


def test_a_file_that_is_not_results_csv_is_named(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"results.csv: not a defectkit results.csv"):
        read_rows(path)


def test_local_engine_records_a_failing_run_and_goes_on(tmp_path):
    good = make_demo_dataset(tmp_path / "data", seed=1, n_train=5, n_test_good=2, n_test_defect=3, size=64)
    broken = shutil.copytree(good, tmp_path / "more" / "broken_part")
    sorted((broken / "train" / "good").glob("*.png"))[0].write_bytes(b"not a png")
    out = tmp_path / "out"
    rows = run_benchmark(
        ["patchcore"],
        [broken, good],
        seeds=[0],
        image_size=64,
        device="cpu",
        out_dir=out,
        progress=False,
        command="pytest",
    )
    assert [r["category"] for r in rows] == ["broken_part", "textured_part"]
    assert rows[0]["error"] and math.isnan(rows[0]["image_auroc"]) and rows[1]["error"] == ""
    with open(out / "results.csv", newline="") as f:
        on_disk = list(csv.DictReader(f))
    assert on_disk[0]["error"].startswith(rows[0]["error"].split(":")[0]) and on_disk[1]["image_auroc"] != ""
    summary = (out / "summary.md").read_text()
    assert "failed runs: 1 of 2" in summary
    assert "| patchcore | efficientnet_lite0 | textured_part | 0 |" in summary
    assert "broken_part" not in summary.split("Mean ±")[0]
