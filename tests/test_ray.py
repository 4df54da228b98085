"""Ray engine: the same grid gives the same metrics on Ray as locally, --resume runs only the
missing runs, a failing run is recorded while the grid goes on, and Ray predict gives local
predict's scores and reports unreadable files, for a .pt and an exported .onnx model.

Ray is started once for the whole test session (local mode, 2 CPUs, no dashboard) and shut
down at its end; every Ray call below joins that session.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from defectkit.cli import main
from defectkit.data import make_demo_dataset

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'defectkit[ray]')")

REPO = Path(__file__).resolve().parents[1]
#: Two methods, two seeds, 64 px: the grid every engine test runs.
METHODS = ["patchcore", "simplenet[epochs=2,feature_batch_size=256]"]
GRID = ["--seeds", "0", "1", "--image-size", "64", "--device", "cpu", "--cpus-per-run", "1"]
METRICS = ("image_auroc", "pixel_auroc", "aupro", "pixel_ap", "image_f1_max", "pixel_f1_max")


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for the session; workers import this checkout's defectkit."""
    path = os.pathsep.join([str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFECTKIT_CACHE_DIR", str(tmp_path / "cache"))


def run_cli(capsys, *argv):
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_csv(path: Path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def category(tmp_path_factory) -> Path:
    return make_demo_dataset(
        tmp_path_factory.mktemp("ray-data"), seed=1, n_train=5, n_test_good=2, n_test_defect=3, size=64
    )


@pytest.fixture(scope="module")
def grids(category, tmp_path_factory, ray_cluster):
    """The grid run with --engine local and with --engine ray: (local out, ray out, ray stdout)."""
    root = tmp_path_factory.mktemp("ray-grids")
    outs = {}
    for engine in ("local", "ray"):
        outs[engine] = root / engine
        code = main(
            [
                "benchmark",
                "--methods",
                *METHODS,
                "--data",
                str(category),
                *GRID,
                "--engine",
                engine,
                "--out",
                str(outs[engine]),
            ]
        )
        assert code == 0, engine
    return outs["local"], outs["ray"]


def test_local_and_ray_engines_give_identical_metrics_per_row(grids):
    local, on_ray = (read_csv(p / "results.csv") for p in grids)
    assert len(local) == len(on_ray) == 4
    keys = [(r["variant"], r["seed"]) for r in local]
    assert keys == [(r["variant"], r["seed"]) for r in on_ray]  # grid order, whatever order runs finished in
    assert keys == [(m, s) for m in METHODS for s in ("0", "1")]
    for a, b in zip(local, on_ray):
        for m in METRICS:
            assert a[m] == b[m], (a["variant"], a["seed"], m)
        assert a["node"] == "" and len(b["node"]) > 10 and a["error"] == b["error"] == ""
    summaries = [json.loads((p / "results.json").read_text())["summary"] for p in grids]
    assert len(summaries[0]) == len(summaries[1]) == 2
    for a, b in zip(*summaries):
        assert (a["variant"], a["seeds"]) == (b["variant"], b["seeds"])
        assert all(a[f"{m}_{s}"] == b[f"{m}_{s}"] for m in METRICS for s in ("mean", "std"))
    assert "failed runs" not in (grids[1] / "summary.md").read_text()


def test_resume_runs_only_the_missing_rows(grids, category, tmp_path, capsys):
    out = tmp_path / "resumed"
    shutil.copytree(grids[1], out)
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    kept = [rows[0], rows[3]]
    cut_short = rows[2][: len(rows[2]) // 2]  # a line the killed process was still writing
    (out / "results.csv").write_text(header + "".join(kept) + cut_short)
    code, _, err = run_cli(
        capsys,
        "benchmark",
        "--methods",
        *METHODS,
        "--data",
        category,
        *GRID,
        "--engine",
        "ray",
        "--out",
        out,
        "--resume",
    )
    assert code == 0, err
    assert "resume: 2 of 4 runs already in" in err and "running the other 2" in err
    after = (out / "results.csv").read_text().splitlines(keepends=True)
    assert len(after) == 5
    assert after[1] == rows[0] and after[4] == rows[3]  # finished runs kept as recorded, not run again
    again = read_csv(out / "results.csv")
    first = read_csv(grids[1] / "results.csv")
    for i in (1, 2):  # the two missing runs ran again: same metrics, new timings
        assert all(again[i][m] == first[i][m] for m in METRICS)
        assert again[i]["timestamp"] >= first[i]["timestamp"]
    assert [(r["variant"], r["seed"]) for r in again] == [(r["variant"], r["seed"]) for r in first]


def test_resume_refuses_rows_recorded_with_other_settings(grids, category, tmp_path, capsys):
    out = tmp_path / "other"
    shutil.copytree(grids[0], out)
    changed = [a if a != "64" else "96" for a in GRID]
    code, _, err = run_cli(
        capsys, "benchmark", "--methods", *METHODS, "--data", category, *changed, "--out", out, "--resume"
    )
    assert code == 2
    assert "cannot resume" in err and "image_size: '64' in results.csv, '96' now" in err
    assert str(out / "results.csv") in err
    code, _, err = run_cli(capsys, "benchmark", "--methods", "patchcore", "--data", category, *GRID, "--out", out)
    assert code == 2 and "--resume" in err  # never replaced without --force


def test_a_failing_run_is_recorded_and_the_grid_goes_on(category, tmp_path, capsys, ray_cluster):
    broken = shutil.copytree(category, tmp_path / "broken" / "broken_part")
    (sorted((broken / "train" / "good").glob("*.png"))[0]).write_bytes(b"not a png")
    out = tmp_path / "out"
    code, _, err = run_cli(
        capsys,
        "benchmark",
        "--methods",
        "patchcore",
        "--data",
        category,
        broken,
        "--seeds",
        "0",
        "--image-size",
        "64",
        "--device",
        "cpu",
        "--engine",
        "ray",
        "--out",
        out,
    )
    assert code == 1
    rows = read_csv(out / "results.csv")
    assert [r["category"] for r in rows] == ["textured_part", "broken_part"]
    good, bad = rows
    assert good["error"] == "" and 0 <= float(good["image_auroc"]) <= 1
    assert bad["error"] and bad["image_auroc"] == "" and "broken_part" in err and "failed" in err
    summary = (out / "summary.md").read_text()
    assert "failed runs: 1 of 2" in summary and "| patchcore | efficientnet_lite0 | textured_part |" in summary
    assert "| broken_part |" not in summary.split("## Per category")[0]


@pytest.fixture(scope="module")
def model_file(category, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ray-model") / "model.pt"
    assert (
        main(
            [
                "train",
                "--method",
                "patchcore",
                "--data",
                str(category),
                "--out",
                str(path),
                "--image-size",
                "64",
                "--device",
                "cpu",
                "--no-cache",
            ]
        )
        == 0
    )
    return path


def test_ray_predict_gives_local_scores_and_reports_unreadable_files(
    category, model_file, tmp_path, capsys, ray_cluster
):
    images = shutil.copytree(category / "test", tmp_path / "images")
    (images / "good" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    (images / "broken-link.png").symlink_to(tmp_path / "nowhere.png")
    threads = torch.get_num_threads()
    torch.set_num_threads(
        1
    )  # as each Ray actor: float sums then run in the same order, so scores are equal bit for bit
    try:
        code, out_local, err = run_cli(
            capsys, "predict", "--model", model_file, "--input", images, "--recursive", "--out", tmp_path / "local"
        )
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err
    code, out_ray, err = run_cli(
        capsys,
        "predict",
        "--model",
        model_file,
        "--input",
        images,
        "--recursive",
        "--out",
        tmp_path / "ray",
        "--engine",
        "ray",
        "--workers",
        "2",
    )
    assert code == 0, err
    assert "unreadable" in err and "corrupt.png" in err
    local = [json.loads(line) for line in (tmp_path / "local" / "predictions.jsonl").read_text().splitlines()]
    parts = sorted((tmp_path / "ray").glob("predictions-*.jsonl"))
    assert parts and all(p.with_suffix(".csv").is_file() for p in parts)
    on_ray = [json.loads(line) for p in parts for line in p.read_text().splitlines()]
    assert sorted(local, key=lambda r: r["file"]) == sorted(on_ray, key=lambda r: r["file"])  # every field equal
    assert {r["label"] for r in on_ray} >= {"unreadable"}
    for r in on_ray:
        for key in ("mask", "overlay"):
            if r.get(key):
                assert (tmp_path / "ray" / r[key]).read_bytes() == (tmp_path / "local" / r[key]).read_bytes()
    counts = [[line for line in text.splitlines() if " entries: " in line] for text in (out_local, out_ray)]
    assert counts[0] == counts[1] and len(counts[0]) == 1 and "2 unreadable" in counts[0][0]
    assert "throughput: " in out_ray and "images/s" in out_ray


def test_ray_predict_on_an_onnx_model_gives_local_records(tmp_path, tmp_path_factory, capsys, ray_cluster):
    from onnx_models import tiny_onnx_model

    data, onnx_path = tiny_onnx_model(tmp_path_factory)
    runs = {}
    for engine in ("local", "ray"):
        code, out, err = run_cli(
            capsys,
            "predict",
            "--model",
            onnx_path,
            "--input",
            data / "test",
            "--recursive",
            "--out",
            tmp_path / engine,
            "--engine",
            engine,
            *(["--workers", "1"] if engine == "ray" else []),
        )
        assert code == 0, err
        runs[engine] = [
            json.loads(line)
            for p in sorted((tmp_path / engine).glob("predictions*.jsonl"))
            for line in p.read_text().splitlines()
        ]
    assert len(runs["local"]) == len(list((data / "test").rglob("*.png"))) > 0
    assert sorted(runs["local"], key=lambda r: r["file"]) == sorted(runs["ray"], key=lambda r: r["file"])


def test_ray_only_options_need_the_ray_engine(category, model_file, tmp_path, capsys):
    code, _, err = run_cli(
        capsys,
        "predict",
        "--model",
        model_file,
        "--input",
        category / "test" / "good",
        "--out",
        tmp_path / "p",
        "--workers",
        "2",
    )
    assert code == 2 and "--workers needs --engine ray" in err
    code, _, err = run_cli(capsys, "benchmark", "--data", category, "--out", tmp_path / "b", "--ray-address", "auto")
    assert code == 2 and "--ray-address needs --engine ray" in err


def test_without_ray_the_error_names_the_extra(monkeypatch):
    from defectkit.engine.ray_cluster import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'defectkit\[ray\]'"):
        import_ray()


def test_without_ray_the_commands_stop_before_writing_anything(category, model_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    code, _, err = run_cli(
        capsys,
        "benchmark",
        "--data",
        category,
        "--seeds",
        "0",
        "--image-size",
        "64",
        "--engine",
        "ray",
        "--out",
        tmp_path / "b",
    )
    assert code == 2 and "pip install 'defectkit[ray]'" in err and not (tmp_path / "b").exists()
    code, _, err = run_cli(
        capsys,
        "predict",
        "--model",
        model_file,
        "--input",
        category / "test" / "good",
        "--out",
        tmp_path / "p",
        "--engine",
        "ray",
    )
    assert code == 2 and "pip install 'defectkit[ray]'" in err and not (tmp_path / "p").exists()
