"""``defectkit data check``: summaries of every miniature layout, and the problems it must name."""

import json
import shutil

import layout_miniatures as mini
import pytest

from defectkit.cli import main
from defectkit.data.check import check_dataset, format_report


def counts(report):
    return {(r["split"], r["defect_type"]): (r["images"], r["masks"]) for r in report.counts}


@pytest.mark.parametrize(
    "build, layout, expected, extra",
    [
        (
            lambda r: mini.build_visa(r / "VisA"),
            "visa",
            {
                ("train", "good"): (3, 0),
                ("test", "good"): (1, 0),
                ("test", "chunk_of_wax_missing"): (1, 1),
                ("test", "damaged_corner_of_packaging+different_colour_spot"): (1, 1),
            },
            {},
        ),
        (
            lambda r: mini.build_btad(r / "BTAD"),
            "btad",
            {("train", "good"): (3, 0), ("test", "good"): (2, 0), ("test", "ko"): (2, 2)},
            {},
        ),
        (
            lambda r: mini.build_mpdd(r / "MPDD"),
            "mpdd",
            {
                ("train", "good"): (3, 0),
                ("test", "good"): (1, 0),
                ("test", "hole"): (2, 2),
                ("test", "scratches"): (2, 2),
            },
            {},
        ),
        (
            lambda r: mini.build_kolektor(r / "KolektorSDD2"),
            "kolektor_sdd2",
            {("train", "good"): (3, 0), ("test", "good"): (2, 0), ("test", "defect"): (2, 2)},
            {"defective training images": 1},
        ),
        (
            lambda r: mini.build_dagm(r / "DAGM"),
            "dagm",
            {("train", "good"): (3, 0), ("test", "good"): (2, 0), ("test", "defect"): (2, 2)},
            {"defective training images": 1},
        ),
        (
            lambda r: mini.build_loco(r / "LOCO"),
            "mvtec_loco",
            {
                ("train", "good"): (3, 0),
                ("validation", "good"): (1, 0),
                ("test", "good"): (1, 0),
                ("test", "logical_anomalies"): (1, 1),
                ("test", "structural_anomalies"): (1, 1),
            },
            {},
        ),
    ],
)
def test_check_summarises_each_miniature(tmp_path, build, layout, expected, extra):
    root = build(tmp_path)
    report = check_dataset(root, progress=False)
    assert report.layout == layout and not report.layout_forced
    assert counts(report) == expected
    assert report.excluded == extra
    assert report.problems == [] and report.ok
    n = sum(v[0] for v in expected.values())
    assert sum(report.image_sizes.values()) == n and list(report.image_sizes) == ["24x16"]
    assert list(report.image_modes) == (["L"] if layout == "dagm" else ["RGB"])
    text = format_report(report)
    assert f"layout: {layout}" in text and "problems: none" in text
    for (split, kind), (images, _) in expected.items():
        assert any(line.split()[:2] == [split, kind] and line.split()[2] == str(images) for line in text.splitlines())


def test_check_names_a_mis_sized_mask_and_a_train_test_duplicate(tmp_path):
    cat = mini.build_mpdd(tmp_path / "mpdd")
    mini.mask(cat / "ground_truth" / "hole" / "001_mask.png", size=(12, 8), box=(1, 1, 3, 3))
    shutil.copyfile(cat / "train" / "good" / "001.png", cat / "test" / "good" / "copy_of_train.png")
    report = check_dataset(cat, progress=False)
    assert not report.ok and len(report.problems) == 2
    mis = next(p for p in report.problems if p.startswith("mis-sized mask"))
    dup = next(p for p in report.problems if p.startswith("duplicate"))
    assert "mis-sized mask" in mis and "001_mask.png" in mis and "12x8" in mis and "24x16" in mis
    assert "duplicate between train and test" in dup
    assert "001.png" in dup and "copy_of_train.png" in dup
    text = format_report(report)
    assert "problems (2):" in text and "copy_of_train.png" in text and "001_mask.png" in text


def test_check_reports_unreadable_missing_and_empty(tmp_path):
    cat = mini.build_btad(tmp_path / "btad")
    (cat / "test" / "ok" / "0001.bmp").write_bytes(b"not an image")
    (cat / "ground_truth" / "ko" / "0000.png").unlink()
    mini.mask(cat / "ground_truth" / "ko" / "0001.png", box=(0, 0, 0, 0))
    problems = check_dataset(cat, progress=False).problems
    assert any("unreadable image" in p and "0001.bmp" in p for p in problems)
    assert any("no ground-truth mask" in p and "0000.bmp" in p for p in problems)
    assert any("empty mask" in p and "0001.png" in p for p in problems)
    assert len(problems) == 3


def test_cli_data_check_exit_codes_and_json(tmp_path, capsys):
    cat = mini.build_loco(tmp_path / "loco")
    assert main(["data", "check", str(cat)]) == 0
    out = capsys.readouterr().out
    assert "layout: mvtec_loco (MVTec LOCO AD), detected" in out
    assert "defect group logical: logical_anomalies" in out
    assert main(["data", "check", str(cat), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["layout"] == "mvtec_loco" and payload["problems"] == []
    shutil.copyfile(cat / "train" / "good" / "000.png", cat / "test" / "good" / "001.png")
    assert main(["data", "check", str(cat)]) == 1
    assert "duplicate between train and test" in capsys.readouterr().out
    assert main(["data", "check", str(cat), "--layout", "visa"]) == 2
    assert "VisA layout" in capsys.readouterr().err
    assert main(["data", "layouts"]) == 0
    assert "kolektor_sdd2" in capsys.readouterr().out
