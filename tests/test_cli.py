"""End-to-end tests of the ``defectkit`` command line on a tiny generated category.

One model is trained once per module (64 px, 6 normal images) and reused by the
test/predict tests, so the whole file runs in a few tens of seconds on 2 CPU cores.
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectkit import cli
from defectkit.cli import main, parse_param
from defectkit.data import load_dataset, make_demo_dataset
from defectkit.data.seen_anomalies import draw_seen_anomalies, seen_file_names
from defectkit.models import load_model
from defectkit.models.registry import register_method
from defectkit.models.patchcore import PatchCore


@register_method
class SeenRecorderCLI(PatchCore):
    """A stand-in supervised method (fit takes ``seen``) that trains as fast as PatchCore."""

    method = "seen_recorder_cli"
    calls = []

    def fit(self, train_data, progress=True, seen=None):
        type(self).calls.append(list(seen or []))
        return super().fit(train_data, progress)

SMALL = ["--image-size", "64", "--no-cache"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = make_demo_dataset(root / "data", seed=0, n_train=6, n_test_good=3, n_test_defect=3, size=64)
    return root, data


@pytest.fixture(scope="module")
def trained(work):
    root, data = work
    model = root / "model.pt"
    assert main(["train", "--data", str(data), "--out", str(model), "--cache-dir", str(root / "cache")] + SMALL) == 0
    return model


def read_csv(path: Path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_test_writes_metrics_csv_and_report(work, trained, capsys):
    root, data = work
    out = root / "test_out"
    assert main(["test", "--model", str(trained), "--data", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "I-AUROC" in printed and "AUPRO" in printed
    assert printed.strip().splitlines()[-1] == f"report: {out / 'report.html'}"

    header, rows = read_csv(out / "per_image.csv")
    assert header == ["path", "defect_type", "label", "score", "predicted_label"]
    assert len(rows) == 6
    assert {r[1] for r in rows} == {"good", "hole", "scratch", "stain"}
    assert all(r[4] in ("0", "1") and np.isfinite(float(r[3])) for r in rows)

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("image_auroc", "pixel_auroc", "aupro", "pixel_ap", "image_f1_max", "pixel_f1_max"):
        assert 0.0 <= metrics[key] <= 1.0, key
    html = (out / "report.html").read_text()
    assert (out / "report.md").is_file()
    overlays = sorted((out / "overlays").glob("*.png"))
    assert overlays and all(f'overlays/{p.name}' in html for p in overlays)
    assert "efficientnet_lite0" in html and "image_size" in html


def test_predict_mixed_folder_skips_unreadable_files(work, trained, capsys):
    root, data = work
    folder = root / "mixed"
    folder.mkdir()
    good = Image.open(data / "test" / "good" / "000.png").convert("RGB")
    good.save(folder / "good.png")
    good.convert("L").save(folder / "gray.png")
    rgba = good.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(folder / "rgba.png")
    good.save(folder / "full.png")
    raw = (folder / "full.png").read_bytes()
    (folder / "full.png").unlink()
    (folder / "truncated.png").write_bytes(raw[: len(raw) // 2])
    (folder / "notes.png").write_text("not an image, just notes\n")

    out = root / "pred_out"
    code = main(["predict", "--model", str(trained), "--input", str(folder), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    err = captured.err
    assert "truncated.png" in err and "notes.png" in err
    for line in err.splitlines():
        if line.startswith("skipped"):
            assert ": " in line and len(line.split(": ", 1)[1]) > 5  # a reason is given
    assert sum(line.startswith("skipped") for line in err.splitlines()) == 2
    assert "Traceback" not in err

    header, rows = read_csv(out / "scores.csv")
    assert header[:3] == ["path", "score", "is_anomalous"]
    assert sorted(Path(r[0]).name for r in rows) == ["good.png", "gray.png", "rgba.png"]
    assert all(r[2] == "" for r in rows)  # no threshold known
    for stem in ("good", "gray", "rgba"):
        im = Image.open(out / f"{stem}_overlay.png")
        assert im.size == (64, 64) and im.mode == "RGB"


def test_predict_with_threshold_flags_images(work, trained, tmp_path):
    _, data = work
    out = tmp_path / "p"
    files = [str(data / "test" / "good" / "000.png"), str(data / "test" / "hole" / "000.png")]
    assert main(["predict", "--model", str(trained), "--input", *files, "--out", str(out), "--threshold", "-1"]) == 0
    _, rows = read_csv(out / "scores.csv")
    assert [r[2] for r in rows] == ["1", "1"]


def test_predict_nothing_readable_is_an_error(work, trained, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_text("nope")
    assert main(["predict", "--model", str(trained), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "o")]) == 2
    assert "defectkit: error:" in capsys.readouterr().err


def test_train_refuses_to_overwrite_without_force(work, trained, capsys):
    root, data = work
    before = trained.read_bytes()
    code = main(["train", "--data", str(data), "--out", str(trained)] + SMALL)
    err = capsys.readouterr().err
    assert code == 2
    assert "already exists" in err and "--force" in err and "Traceback" not in err
    assert trained.read_bytes() == before


def test_train_on_plain_folder_with_force(work, tmp_path, capsys):
    _, data = work
    model = tmp_path / "plain.pt"
    model.write_bytes(b"old")
    args = ["train", "--data", str(data / "train" / "good"), "--out", str(model), "--force",
            "--param", "coreset_ratio=0.5"] + SMALL
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"model: {model}" in out and "fit_info:" in out and "train_seconds=" in out
    assert model.read_bytes() != b"old"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--data", "{tmp}/missing", "--out", "{tmp}/m.pt"], "not found"),
        (["train", "--data", "{tmp}", "--out", "{tmp}/m.pt"], "no training images"),
        (["train", "--data", "{data}", "--out", "{tmp}/m.pt", "--method", "nosuchmethod"], "unknown method"),
        (["train", "--data", "{data}", "--out", "{tmp}/m.pt", "--backbone", "nosuchnet"], "unknown backbone"),
        (["train", "--data", "{data}", "--out", "{tmp}/m.pt", "--param", "no_such_param=1"], "no_such_param"),
        (["test", "--model", "{tmp}/missing.pt", "--data", "{data}"], "model file not found"),
        (["test", "--model", "{tmp}/junk.pt", "--data", "{data}"], "is not a defectkit model file"),
    ],
)
def test_user_errors_are_one_line(work, tmp_path, capsys, argv, needle):
    _, data = work
    (tmp_path / "junk.pt").write_text("junk")
    argv = [a.format(tmp=tmp_path, data=data) for a in argv]
    assert main(argv + SMALL[2:]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("defectkit: error:") and needle in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_debug_reraises(tmp_path):
    with pytest.raises(Exception):
        main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "m.pt"), "--debug"])


def test_parse_param():
    assert parse_param("coreset_ratio=0.05") == ("coreset_ratio", 0.05)
    assert parse_param("strides=(8, 16)") == ("strides", (8, 16))
    assert parse_param("search_backend=torch") == ("search_backend", "torch")
    assert parse_param("flag=True") == ("flag", True)
    assert parse_param("use_msa=false") == ("use_msa", False)
    assert parse_param("use_msa=TRUE") == ("use_msa", True)
    assert parse_param("foreground=none") == ("foreground", None)
    assert parse_param("textures= /data/dtd ") == ("textures", "/data/dtd")


def test_list_commands(capsys):
    assert main(["methods"]) == 0
    assert "patchcore" in capsys.readouterr().out
    assert main(["backbones"]) == 0
    assert "efficientnet_lite0" in capsys.readouterr().out


def test_demo_ends_with_report_path(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "DEMO_DATA", {"n_train": 4, "n_test_good": 2, "n_test_defect": 3, "size": 64})
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--cache-dir", str(tmp_path / "cache")] + SMALL) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"report: {out / 'report.html'}"
    assert (out / "report.html").is_file() and (out / "model.pt").is_file()
    assert (tmp_path / "cache" / "demo_data" / "textured_part").is_dir()
    # a second run into the same folder is refused
    assert main(["demo", "--out", str(out), "--cache-dir", str(tmp_path / "cache")] + SMALL) == 2


def test_benchmark_command_refuses_existing_results(work, tmp_path, capsys):
    _, data = work
    out = tmp_path / "bench"
    out.mkdir()
    (out / "results.csv").write_text("method\nx\n")
    code = main(["benchmark", "--methods", "patchcore", "--data", str(data), "--seeds", "0", "--out", str(out)] + SMALL)
    assert code == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "results.csv").read_text() == "method\nx\n"


def test_benchmark_variants_and_boolean_params(work, tmp_path, capsys):
    _, data = work
    out = tmp_path / "bench"
    argv = ["benchmark", "--methods", "patchcore", "patchcore[coreset_ratio=0.5]", "--data", str(data),
            "--seeds", "0", "--out", str(out), "--param", "coreset_ratio=0.2"] + SMALL
    assert main(argv) == 0
    assert "| patchcore[coreset_ratio=0.5] |" in capsys.readouterr().out
    header, rows = read_csv(out / "results.csv")
    variant, params = header.index("variant"), header.index("method_params")
    assert [(r[0], r[variant], json.loads(r[params])["coreset_ratio"]) for r in rows] == [
        ("patchcore", "patchcore", 0.2), ("patchcore", "patchcore[coreset_ratio=0.5]", 0.5)]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["benchmark", "--methods", "patchcore", "--seen-anomalies", "2"], "unsupervised; --seen-anomalies applies to"),
        (["benchmark", "--methods", "patchcore[no_such=1]"], "unknown parameter 'no_such'"),
        (["train", "--method", "patchcore", "--seen-anomalies", "2", "--out", "{tmp}/m.pt"], "is unsupervised"),
        (["train", "--method", "seen_recorder_cli", "--seen-anomalies", "9", "--out", "{tmp}/m.pt"], "only 3"),
    ],
)
def test_seen_and_variant_errors_are_one_line(work, tmp_path, capsys, argv, needle):
    _, data = work
    argv = [a.format(tmp=tmp_path) for a in argv] + ["--data", str(data)] + SMALL
    if argv[0] == "benchmark":
        argv += ["--seeds", "0", "--out", str(tmp_path / "b")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("defectkit: error:") and needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists() and not (tmp_path / "m.pt").exists()


def test_train_with_seen_anomalies_then_test_excludes_them(work, tmp_path, capsys):
    _, data = work
    model_path = tmp_path / "sup.pt"
    SeenRecorderCLI.calls.clear()
    argv = ["train", "--method", "seen_recorder_cli", "--data", str(data), "--out", str(model_path),
            "--seen-anomalies", "2", "--seed", "1", "--param", "coreset_ratio=0.5"] + SMALL
    assert main(argv) == 0
    expected, reduced = draw_seen_anomalies(load_dataset(data), 2, 1)
    assert [s.path for s in SeenRecorderCLI.calls[0]] == [s.path for s in expected]
    names = seen_file_names(expected)
    assert load_model(model_path).fit_info_["seen_anomalies"] == names
    assert "2 seen anomalies" in capsys.readouterr().out

    out = tmp_path / "test_out"
    assert main(["test", "--model", str(model_path), "--data", str(data), "--out", str(out)]) == 0
    assert "excluding 2 test images" in capsys.readouterr().out
    _, rows = read_csv(out / "per_image.csv")
    assert sorted(Path(r[0]) for r in rows) == sorted(s.path for s in reduced)
    assert not {f"{r[1]}/{Path(r[0]).name}" for r in rows} & set(names)


def test_seen_options_are_exclusive(work, tmp_path, capsys):
    _, data = work
    argv = ["train", "--method", "seen_recorder_cli", "--data", str(data), "--out", str(tmp_path / "m.pt"),
            "--seen-anomalies", "2", "--seen-dir", str(tmp_path)]
    assert main(argv) == 2
    assert "not allowed with" in capsys.readouterr().err
