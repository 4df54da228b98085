"""``defectkit report`` and the files ``test`` / ``benchmark`` write for their pages."""

import json

import pytest

from defectkit.cli import main
from defectkit.data import make_demo_dataset

SMALL = ["--image-size", "64", "--no-cache"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("clireport")
    data = make_demo_dataset(root / "data", seed=5, n_train=6, n_test_good=3, n_test_defect=3, size=64)
    model = root / "model.pt"
    assert main(["train", "--data", str(data), "--out", str(model), "--cache-dir", str(root / "cache")] + SMALL) == 0
    return root, data, model


def test_test_then_report_rebuilds_the_page(work, capsys):
    root, data, model = work
    out = root / "run"
    assert main(["test", "--model", str(model), "--data", str(data), "--out", str(out)]) == 0
    assert (out / "run.json").is_file() and json.loads((out / "run.json").read_text())["format"] == "defectkit-run"
    first = (out / "report.html").read_text()
    capsys.readouterr()
    # nothing is replaced without --force
    assert main(["report", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["test", "--model", str(model), "--data", str(data), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["report", str(out), "--force"]) == 0
    assert capsys.readouterr().out.strip() == f"report: {out / 'report.html'}"
    assert (out / "report.html").read_text() == first
    assert main(["report", str(out), "--out", str(root / "copy.html")]) == 0
    assert (root / "copy.html").is_file() and (root / "copy.md").is_file()
    assert main(["test", "--model", str(model), "--data", str(data), "--out", str(out), "--force"]) == 0


def test_report_errors_name_the_folder(work, capsys):
    root, _, _ = work
    (root / "empty").mkdir()
    assert main(["report", str(root / "empty")]) == 2
    err = capsys.readouterr().err
    assert "run.json not found" in err and "empty" in err
    assert main(["report", str(root / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_benchmark_writes_its_page_and_run_pages(work, capsys):
    root, data, _ = work
    out = root / "bench"
    assert (
        main(
            [
                "benchmark",
                "--methods",
                "patchcore",
                "--data",
                str(data),
                "--seeds",
                "0",
                "--out",
                str(out),
                "--run-pages",
                "--param",
                "coreset_ratio=0.5",
            ]
            + SMALL
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert f"page: {out / 'benchmark.html'}" in printed
    run_page = out / "runs" / "patchcore-textured_part-seed0" / "report.html"
    assert run_page.is_file() and (run_page.parent / "run.json").is_file()
    html = (out / "benchmark.html").read_text()
    assert 'href="runs/patchcore-textured_part-seed0/report.html"' in html
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert rows[0]["run_page"] == "runs/patchcore-textured_part-seed0/report.html"
    (out / "benchmark.html").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "benchmark.html").read_text() == html
