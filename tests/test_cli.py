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
from defectkit.models.patchcore import PatchCore
from defectkit.models.registry import register_method


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
    assert overlays and all(f"overlays/{p.name}" in html for p in overlays)
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
    unreadable = [line for line in err.splitlines() if line.startswith("unreadable")]
    assert len(unreadable) == 2
    for line in unreadable:
        assert ": " in line and len(line.split(": ", 1)[1]) > 5  # a reason is given
    assert "Traceback" not in err
    assert "5 entries: " in captured.out and "2 unreadable" in captured.out

    header, rows = read_csv(out / "predictions.csv")
    assert header[:3] == ["file", "score", "label"]
    scored = [r for r in rows if r[2] in ("good", "defect")]
    assert sorted(Path(r[0]).name for r in scored) == ["good.png", "gray.png", "rgba.png"]
    assert sorted(Path(r[0]).name for r in rows if r[2] == "unreadable") == ["notes.png", "truncated.png"]
    for stem in ("good", "gray", "rgba"):
        im = Image.open(out / "overlays" / f"{stem}.png")
        assert im.size == (64, 64) and im.mode == "RGB"


def test_trained_model_carries_thresholds_and_predict_uses_them(work, trained, tmp_path, capsys):
    _, data = work
    model = load_model(trained, device="cpu")
    th = model.thresholds_
    assert th is not None and th.rule == "fpr" and th.fpr == 0.01 and th.pixel is not None
    assert len(th.normal_scores) == len(model.fit_info_["val_image_names"]) == 2
    out = tmp_path / "p"
    files = [str(data / "test" / "good" / "000.png"), str(data / "test" / "hole" / "000.png")]
    assert main(["predict", "--model", str(trained), "--input", *files, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"thresholds: image threshold {th.image:.4g}" in printed
    recs = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["label"] for r in recs] == ["defect" if r["score"] >= th.image else "good" for r in recs]
    assert all(r["threshold"] == pytest.approx(th.image) for r in recs)


def test_predict_with_threshold_flags_images(work, trained, tmp_path):
    _, data = work
    out = tmp_path / "p"
    files = [str(data / "test" / "good" / "000.png"), str(data / "test" / "hole" / "000.png")]
    assert main(["predict", "--model", str(trained), "--input", *files, "--out", str(out), "--threshold", "-1"]) == 0
    _, rows = read_csv(out / "predictions.csv")
    assert [r[2] for r in rows] == ["defect", "defect"]
    assert all(r[3] == "-1.0" for r in rows)
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["000-2.png", "000.png"]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_predict_refuses_a_threshold_that_is_not_finite(work, trained, tmp_path, capsys, value):
    _, data = work
    argv = [
        "predict",
        "--model",
        str(trained),
        "--input",
        str(data / "test" / "good"),
        "--out",
        str(tmp_path / "p"),
        f"--threshold={value}",
    ]
    assert main(argv) == 2
    assert "finite" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_predict_names_what_it_skips_and_can_recurse(work, trained, tmp_path, capsys):
    _, data = work
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    img = (data / "test" / "good" / "000.png").read_bytes()
    (src / "a.png").write_bytes(img)
    (src / "sub" / "b.png").write_bytes(img)
    (src / ".hidden.png").write_bytes(img)
    (src / "gone.png").symlink_to(tmp_path / "missing.png")
    assert main(["predict", "--model", str(trained), "--input", str(src), "--out", str(tmp_path / "p")]) == 0
    captured = capsys.readouterr()
    line = next(e for e in captured.err.splitlines() if e.startswith("skipped"))
    assert line.startswith("skipped 3: ")
    assert (
        "gone.png (broken link)" in line
        and "sub/ (folder; use --recursive)" in line
        and ".hidden.png (hidden file)" in line
    )
    assert "1 good" in captured.out or "1 defect" in captured.out
    assert (
        main(["predict", "--model", str(trained), "--input", str(src), "--out", str(tmp_path / "q"), "--recursive"])
        == 0
    )
    recs = [json.loads(r) for r in (tmp_path / "q" / "predictions.jsonl").read_text().splitlines()]
    assert sorted(Path(r["file"]).name for r in recs if r["score"] is not None) == ["a.png", "b.png"]


def test_predict_fail_on_unreadable_exits_non_zero(work, trained, tmp_path, capsys):
    _, data = work
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes((data / "test" / "good" / "000.png").read_bytes())
    (src / "b.png").write_text("not an image")
    argv = ["predict", "--model", str(trained), "--input", str(src), "--out", str(tmp_path / "p")]
    assert main(argv) == 0
    assert main(argv[:-1] + [str(tmp_path / "q"), "--fail-on-unreadable"]) == 3
    assert "1 inputs could not be read" in capsys.readouterr().err
    assert (tmp_path / "q" / "predictions.jsonl").is_file()  # the readable ones are still written


def test_predict_and_test_refuse_a_non_empty_out_and_force_leaves_no_stale_files(work, trained, tmp_path, capsys):
    _, data = work
    out = tmp_path / "p"
    two = [str(data / "test" / "good" / "000.png"), str(data / "test" / "hole" / "000.png")]
    assert main(["predict", "--model", str(trained), "--input", *two, "--out", str(out), "--threshold", "-1"]) == 0
    (out / "keep.txt").write_text("mine")
    one = two[:1]
    assert main(["predict", "--model", str(trained), "--input", *one, "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (
        main(["predict", "--model", str(trained), "--input", *one, "--out", str(out), "--force", "--threshold", "-1"])
        == 0
    )
    assert [p.name for p in (out / "overlays").iterdir()] == ["000.png"]
    assert [p.name for p in (out / "masks").iterdir()] == ["000.png"]
    assert (out / "keep.txt").read_text() == "mine"

    tout = tmp_path / "t"
    assert main(["test", "--model", str(trained), "--data", str(data), "--out", str(tout)]) == 0
    first = sorted(p.name for p in (tout / "overlays").iterdir())
    (tout / "overlays" / "stale_from_me.png").write_bytes(b"mine")
    assert main(["test", "--model", str(trained), "--data", str(data), "--out", str(tout)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (
        main(["test", "--model", str(trained), "--data", str(data), "--out", str(tout), "--force", "--examples", "1"])
        == 0
    )
    assert len(list((tout / "overlays").glob("example_*.png"))) == 1 < len(first)
    assert (tout / "overlays" / "stale_from_me.png").read_bytes() == b"mine"


def test_test_reports_the_confusion_at_the_model_threshold(work, trained, tmp_path, capsys):
    _, data = work
    out = tmp_path / "t"
    assert main(["test", "--model", str(trained), "--data", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "at the model's threshold" in printed
    decision = json.loads((out / "decision.json").read_text())
    c = decision["confusion"]
    assert c["good_as_good"] + c["good_as_defect"] == 3 and c["defect_as_good"] + c["defect_as_defect"] == 3
    th = load_model(trained, device="cpu").thresholds_
    _, rows = read_csv(out / "per_image.csv")
    flagged_good = sum(1 for r in rows if r[2] == "0" and float(r[3]) >= th.image)
    assert c["good_as_defect"] == flagged_good and decision["threshold"] == pytest.approx(th.image)


def test_predict_with_a_model_without_thresholds_says_so(work, trained, tmp_path, capsys):
    from defectkit.utils.model_file import read_model_file, write_model_file

    _, data = work
    payload = read_model_file(trained)
    del payload["thresholds"]
    old = tmp_path / "old.pt"
    write_model_file(old, payload)
    assert (
        main(["predict", "--model", str(old), "--input", str(data / "test" / "good"), "--out", str(tmp_path / "p")])
        == 0
    )
    assert "this model stores none" in capsys.readouterr().out
    _, rows = read_csv(tmp_path / "p" / "predictions.csv")
    assert all(r[2] == "" for r in rows)


def test_predict_nothing_readable_is_an_error(work, trained, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_text("nope")
    assert (
        main(["predict", "--model", str(trained), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "o")]) == 2
    )
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
    args = [
        "train",
        "--data",
        str(data / "train" / "good"),
        "--out",
        str(model),
        "--force",
        "--param",
        "coreset_ratio=0.5",
    ] + SMALL
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"model: {model}" in out and "fit_info:" in out and "train_seconds=" in out
    assert "thresholds: image threshold" in out
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
    with pytest.raises(FileNotFoundError):
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
    argv = [
        "benchmark",
        "--methods",
        "patchcore",
        "patchcore[coreset_ratio=0.5]",
        "--data",
        str(data),
        "--seeds",
        "0",
        "--out",
        str(out),
        "--param",
        "coreset_ratio=0.2",
    ] + SMALL
    assert main(argv) == 0
    assert "| patchcore[coreset_ratio=0.5] |" in capsys.readouterr().out
    header, rows = read_csv(out / "results.csv")
    variant, params = header.index("variant"), header.index("method_params")
    assert [(r[0], r[variant], json.loads(r[params])["coreset_ratio"]) for r in rows] == [
        ("patchcore", "patchcore", 0.2),
        ("patchcore", "patchcore[coreset_ratio=0.5]", 0.5),
    ]


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
    argv = [
        "train",
        "--method",
        "seen_recorder_cli",
        "--data",
        str(data),
        "--out",
        str(model_path),
        "--seen-anomalies",
        "2",
        "--seed",
        "1",
        "--param",
        "coreset_ratio=0.5",
    ] + SMALL
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
    argv = [
        "train",
        "--method",
        "seen_recorder_cli",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "m.pt"),
        "--seen-anomalies",
        "2",
        "--seen-dir",
        str(tmp_path),
    ]
    assert main(argv) == 2
    assert "not allowed with" in capsys.readouterr().err


def test_train_with_threshold_defects_sets_f1_thresholds(work, tmp_path, capsys):
    _, data = work
    defects = tmp_path / "defects"
    defects.mkdir()
    for kind in ("hole", "scratch"):
        (defects / f"{kind}.png").write_bytes((data / "test" / kind / "000.png").read_bytes())
        (defects / f"{kind}_mask.png").write_bytes((data / "ground_truth" / kind / "000_mask.png").read_bytes())
    model = tmp_path / "f1.pt"
    argv = ["train", "--data", str(data), "--out", str(model), "--threshold-defects", str(defects), "--fpr", "0.3"]
    assert main(argv + SMALL) == 0
    loaded = load_model(model, device="cpu")
    assert loaded.fpr == 0.3
    th = loaded.thresholds_
    assert th.rule == "f1" and f"2 annotated defects in {defects}" in th.source and "image_f1" in th.stats
    assert "F1-max" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--threshold-rule", "f1"], "--threshold-defects"),
        (["--fpr", "0"], "fraction in (0, 1)"),
        (["--fpr", "nan"], "finite"),
    ],
)
def test_train_threshold_options_fail_before_training(work, tmp_path, capsys, extra, needle):
    _, data = work
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "m.pt")] + extra + SMALL) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_train_f1_rule_on_seen_anomalies_of_a_supervised_method(work, tmp_path):
    _, data = work
    model = tmp_path / "sup.pt"
    argv = [
        "train",
        "--method",
        "seen_recorder_cli",
        "--data",
        str(data),
        "--out",
        str(model),
        "--seen-anomalies",
        "3",
        "--threshold-rule",
        "f1",
        "--param",
        "coreset_ratio=0.5",
    ]
    assert main(argv + SMALL) == 0
    th = load_model(model, device="cpu").thresholds_
    assert th.rule == "f1" and "3 seen anomalies (also trained on" in th.source
