"""``benchmark --data ROOT``: every category of a root, and the papers' per-category tables."""

import torch

from defectkit.cli import main
from defectkit.data import make_demo_dataset
from defectkit.engine.results import format_category_tables, summarise

torch.set_num_threads(1)


def test_benchmark_on_a_root_reports_each_category_and_the_mean(tmp_path, capsys):
    root = tmp_path / "data"
    for name, seed in (("alpha", 0), ("beta", 1)):
        make_demo_dataset(root, seed=seed, n_train=5, n_test_good=2, n_test_defect=3, size=64, name=name)
    out = tmp_path / "bench"
    argv = [
        "benchmark",
        "--methods",
        "patchcore",
        "patchcore[coreset_ratio=0.5]",
        "--data",
        str(root),
        "--seeds",
        "0",
        "--image-size",
        "64",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    summary = (out / "summary.md").read_text()
    assert "## Per category" in summary and "**I-AUROC**" in summary and "**AUPRO**" in summary
    table = summary.split("**I-AUROC**")[1].split("**P-AUROC**")[0]
    header = next(line for line in table.splitlines() if line.startswith("| category"))
    assert header == "| category | patchcore | patchcore[coreset_ratio=0.5] |"  # methods as columns
    rows = [
        line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "category" not in line
    ]
    assert rows == ["alpha", "beta", "**mean**"]
    csv_text = (out / "results.csv").read_text()
    assert "resize" in csv_text.splitlines()[0] and "layout" in csv_text.splitlines()[0]


def test_category_table_mean_is_the_mean_of_the_categories():
    rows = []
    for cat, value in (("a", 0.9), ("b", 0.7)):
        rows.append(
            {
                "method": "m",
                "variant": "m",
                "backbone": "bb",
                "category": cat,
                "seed": 0,
                "image_auroc": value,
                "pixel_auroc": value,
                "aupro": value,
            }
        )
    text = format_category_tables(summarise(rows))
    assert "| a | 90.0 ± 0.0 |" in text and "| b | 70.0 ± 0.0 |" in text and "| **mean** | 80.0 ± 0.0 |" in text
    assert format_category_tables(summarise(rows[:1])) == ""
