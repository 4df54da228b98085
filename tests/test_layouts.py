"""Data-set readers, each on a miniature of its real layout (tests/layout_miniatures.py)."""

import layout_miniatures as mini
import numpy as np
import pytest

from defectkit.data import DatasetLayoutError, Preprocess, load_dataset, load_masks, read_mask
from defectkit.data.folder import resolve_categories
from defectkit.data.layouts import detect_layout, find_categories, get_layout, layout_names, open_dataset
from defectkit.data.layouts.dagm import read_labels_txt


def summary(ds):
    return [(s.defect_type, s.path.name, s.label, None if s.mask_path is None else s.mask_path.name) for s in ds.test]


def test_registry_lists_every_layout_once():
    names = layout_names()
    assert sorted(names) == sorted(set(names))
    assert {"mvtec_ad", "mvtec3d_ad", "mvtec_loco", "mpdd", "visa", "btad", "kolektor_sdd2", "dagm"} <= set(names)
    with pytest.raises(KeyError, match="known layouts"):
        get_layout("mvtec")


def test_visa(tmp_path):
    cat = mini.build_visa(tmp_path / "VisA")
    ds = load_dataset(cat)
    assert ds.layout == "visa" and ds.name == "candle"
    assert [s.path.name for s in ds.train] == ["0000.JPG", "0001.JPG", "0002.JPG"]  # the split file's train rows
    assert summary(ds) == [
        ("good", "0003.JPG", 0, None),
        ("chunk_of_wax_missing", "000.JPG", 1, "000.png"),
        ("damaged_corner_of_packaging+different_colour_spot", "001.JPG", 1, "001.png"),
    ]
    masks = load_masks(ds.test, Preprocess(16, resize="keep"))
    assert masks[0].sum() == 0 and masks[1].sum() > 0 and masks[2].sum() > 0  # label values 1, 2 are defects


def test_visa_needs_its_split_file_and_checks_rows(tmp_path):
    cat = mini.build_visa(tmp_path / "VisA")
    (tmp_path / "VisA" / "split_csv" / "1cls.csv").rename(tmp_path / "elsewhere.csv")
    with pytest.raises(DatasetLayoutError, match=r"split_csv[/\\]1cls.csv"):
        load_dataset(cat)
    text = (tmp_path / "elsewhere.csv").read_text().replace("Masks/Anomaly/001.png", "Masks/Anomaly/missing.png")
    (tmp_path / "VisA" / "split_csv" / "1cls.csv").write_text(text)
    with pytest.raises(DatasetLayoutError, match="001.JPG"):
        load_dataset(cat)
    lenient = load_dataset(cat, strict=False)
    assert any("missing.png" in p for p in lenient.problems)


def test_btad(tmp_path):
    cat = mini.build_btad(tmp_path / "BTech_Dataset_transformed")
    ds = load_dataset(cat)
    assert ds.layout == "btad" and ds.name == "01" and len(ds.train) == 3
    assert summary(ds) == [
        ("good", "0000.bmp", 0, None),
        ("good", "0001.bmp", 0, None),
        ("ko", "0000.bmp", 1, "0000.png"),
        ("ko", "0001.bmp", 1, "0001.png"),
    ]
    (cat / "ground_truth" / "ko" / "0001.png").unlink()
    with pytest.raises(DatasetLayoutError, match=r"ko[/\\]0001.bmp"):
        load_dataset(cat)


def test_mpdd_is_detected_by_name_or_parent_and_forced_otherwise(tmp_path):
    cat = mini.build_mpdd(tmp_path / "mpdd")
    ds = load_dataset(cat)
    assert ds.layout == "mpdd" and ds.defect_types == ("hole", "scratches") and len(ds.test) == 5
    other = mini.build_mpdd(tmp_path / "parts", name="my_part")
    assert load_dataset(other).layout == "mvtec_ad"  # MVTec AD's structure, no MPDD name
    assert load_dataset(other, layout="mpdd").layout == "mpdd"


def test_kolektor_sdd2_labels_from_masks(tmp_path):
    root = mini.build_kolektor(tmp_path / "KolektorSDD2")
    ds = load_dataset(root)
    assert ds.layout == "kolektor_sdd2"
    assert [s.path.name for s in ds.train] == ["10000.png", "10001.png", "10002.png"]
    assert [p.name for p in ds.excluded["defective training images"]] == ["10003.png"]
    assert summary(ds) == [
        ("good", "20000.png", 0, None),
        ("good", "20001.png", 0, None),
        ("defect", "20002.png", 1, "20002_GT.png"),
        ("defect", "20003.png", 1, "20003_GT.png"),
    ]


def test_dagm_labels_come_from_labels_txt(tmp_path):
    cat = mini.build_dagm(tmp_path / "DAGM")
    labels = read_labels_txt(cat / "Test" / "Label" / "Labels.txt")
    assert labels["0003.PNG"] == (1, "defect_0003.PNG") and labels["0004.PNG"] == (0, None)
    ds = load_dataset(cat)
    assert ds.layout == "dagm" and ds.name == "Class1"
    assert [s.path.name for s in ds.train] == ["0001.PNG", "0002.PNG", "0003.PNG"]
    assert [p.name for p in ds.excluded["defective training images"]] == ["0004.PNG"]
    # 0003's mask is the file Labels.txt names; 0004 is good although a 0004_label.PNG exists
    assert summary(ds) == [
        ("good", "0001.PNG", 0, None),
        ("good", "0004.PNG", 0, None),
        ("defect", "0002.PNG", 1, "0002_label.PNG"),
        ("defect", "0003.PNG", 1, "defect_0003.PNG"),
    ]


def test_dagm_without_labels_txt_falls_back_to_label_files_when_not_strict(tmp_path):
    cat = mini.build_dagm(tmp_path / "DAGM")
    (cat / "Test" / "Label" / "Labels.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="Labels.txt"):
        load_dataset(cat)
    ds = load_dataset(cat, strict=False)
    # by file presence 0004 is defective and 0003 (oddly named label) is not: why Labels.txt decides
    assert [(s.path.name, s.label) for s in ds.test if s.label] == [("0002.PNG", 1), ("0004.PNG", 1)]
    assert any("Labels.txt" in p for p in ds.problems)


def test_mvtec_loco_merges_mask_files_and_groups_defects(tmp_path):
    cat = mini.build_loco(tmp_path / "mvtec_loco_anomaly_detection")
    ds = load_dataset(cat)
    assert ds.layout == "mvtec_loco" and len(ds.train) == 3 and len(ds.validation) == 1
    assert ds.defect_groups == {"logical": ("logical_anomalies",), "structural": ("structural_anomalies",)}
    logical = next(s for s in ds.test if s.defect_type == "logical_anomalies")
    assert logical.mask_path.is_dir()
    merged = read_mask(logical.mask_path)
    first = read_mask(logical.mask_path / "000.png")
    second = read_mask(logical.mask_path / "001.png")
    assert np.array_equal(merged, first | second) and first.sum() and second.sum() and not (first & second).any()
    (cat / "ground_truth" / "structural_anomalies" / "000" / "000.png").unlink()
    with pytest.raises(DatasetLayoutError, match="structural_anomalies"):
        load_dataset(cat)


def test_loco_is_not_taken_for_mvtec_ad(tmp_path):
    cat = mini.build_loco(tmp_path / "loco")
    assert detect_layout(cat).name == "mvtec_loco"
    with pytest.raises(DatasetLayoutError):
        load_dataset(cat, layout="mvtec_ad")  # MVTec AD's reader wants <stem>_mask.png files


@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda r: (mini.build_visa(r, "candle"), mini.build_visa(r, "pcb1"))[0].parent, ["candle", "pcb1"]),
        (lambda r: (mini.build_btad(r, "01"), mini.build_btad(r, "02"))[0].parent, ["01", "02"]),
        (lambda r: (mini.build_dagm(r, "Class1"), mini.build_dagm(r, "Class2"))[0].parent, ["Class1", "Class2"]),
        (
            lambda r: (mini.build_loco(r, "juice_bottle"), mini.build_loco(r, "pushpins"))[0].parent,
            ["juice_bottle", "pushpins"],
        ),
    ],
)
def test_roots_resolve_to_their_categories(tmp_path, build, expected):
    root = build(tmp_path / "root")
    assert [p.name for p in resolve_categories([root])] == expected
    with pytest.raises(DatasetLayoutError, match=expected[0]):
        load_dataset(root)  # a root is not one category: the error names them


def test_forced_layout_errors_name_the_expected_structure(tmp_path):
    cat = mini.build_btad(tmp_path / "btad")
    with pytest.raises(DatasetLayoutError, match="split_csv"):
        open_dataset(cat, layout="visa")
    assert find_categories(cat, layout="btad") == [cat]


def test_loco_logical_and_structural_are_scored_apart(tmp_path, capsys):
    import json

    import torch

    from defectkit.cli import main

    torch.set_num_threads(1)
    cat = mini.build_loco(tmp_path / "loco", size=(48, 32))  # models need 32 px or more
    model = tmp_path / "loco.pt"
    small = ["--image-size", "32", "--no-cache", "--device", "cpu"]
    assert main(["train", "--data", str(cat), "--out", str(model), "--resize", "keep"] + small) == 0
    assert main(["test", "--model", str(model), "--data", str(cat), "--out", str(tmp_path / "run"), "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "logical anomalies only (1 defective + the good images)" in out
    assert "structural anomalies only (1 defective + the good images)" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["groups"]) == {"logical", "structural"}
    assert {"image_auroc", "pixel_auroc", "aupro"} <= set(metrics["groups"]["logical"])
