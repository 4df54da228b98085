"""Tests for defectkit.data: conversions, errors, preprocessing, layouts, demo, batches."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MVTEC_BOTTLE, requires_shared_data
from PIL import Image, ImageFile

from defectkit.data import (
    IMAGE_EXTENSIONS,
    DatasetLayoutError,
    FolderDataset,
    ImageReadError,
    MVTec3DCategory,
    MVTecCategory,
    Preprocess,
    Sample,
    is_mvtec3d_category,
    is_mvtec_category,
    list_images,
    load_dataset,
    load_images,
    load_masks,
    make_demo_dataset,
    mvtec3d_category,
    read_image,
    read_mask,
)

# ----------------------------------------------------------------------------- helpers


def save(tmp_path, name, im: Image.Image, **kw) -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    im.save(p, **kw)
    return p


def rgb_png(path: Path, value=(10, 20, 30), size=(8, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, value).save(path)
    return path


def mask_png(path: Path, size=(8, 6), box=(1, 1, 3, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((size[1], size[0]), np.uint8)
    m[box[1] : box[3], box[0] : box[2]] = 255
    Image.fromarray(m).save(path)
    return path


# ----------------------------------------------------------------------------- read_image


def test_rgb_roundtrip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = read_image(save(tmp_path, "a.png", Image.fromarray(arr)))
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, arr)


def test_gray_L(tmp_path):
    arr = np.array([[0, 7], [128, 255]], np.uint8)
    out = read_image(save(tmp_path, "g.png", Image.fromarray(arr, "L")))
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], arr)


def test_one_bit(tmp_path):
    im = Image.fromarray(np.array([[0, 255]], np.uint8), "L").convert("1")
    out = read_image(save(tmp_path, "b.png", im))
    np.testing.assert_array_equal(out[0, :, 0], [0, 255])


@pytest.mark.parametrize("fmt", ["png", "tif"])
def test_sixteen_bit_scaled_not_clipped(tmp_path, fmt):
    arr = np.array([[0, 65535, 257], [32768, 1000, 65280]], np.uint16)
    im = Image.fromarray(arr)
    assert im.mode == "I;16"
    out = read_image(save(tmp_path, f"d.{fmt}", im))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    expected = np.round(arr / 257.0).astype(np.uint8)  # 65535 -> 255, 32768 -> 128
    np.testing.assert_array_equal(out[..., 0], expected)
    np.testing.assert_array_equal(out[..., 2], expected)
    assert out[0, 1, 0] == 255 and out[1, 0, 0] == 128


def test_sixteen_bit_big_endian_in_memory_file(tmp_path):
    im = Image.frombytes("I;16B", (2, 1), np.array([65535, 514], ">u2").tobytes())
    out = read_image(save(tmp_path, "be.tif", im))
    np.testing.assert_array_equal(out[0, :, 0], [255, 2])


def test_int32_image_treated_as_16_bit_and_out_of_range_raises(tmp_path):
    ok = Image.fromarray(np.array([[0, 65535]], np.int32))
    assert ok.mode == "I"
    np.testing.assert_array_equal(read_image(save(tmp_path, "i.tif", ok))[0, :, 0], [0, 255])
    bad = save(tmp_path, "big.tif", Image.fromarray(np.array([[0, 70000]], np.int32)))
    with pytest.raises(ImageReadError, match="big.tif"):
        read_image(bad)


def test_float_image(tmp_path):
    im = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert im.mode == "F"
    np.testing.assert_array_equal(read_image(save(tmp_path, "f.tif", im))[0, :, 1], [0, 128, 255])
    bad = save(tmp_path, "f2.tif", Image.fromarray(np.array([[0.0, 3.0]], np.float32)))
    with pytest.raises(ImageReadError, match=r"outside \[0, 1\]"):
        read_image(bad)


def test_rgba_composited_over_black(tmp_path):
    arr = np.array([[[200, 100, 50, 128], [200, 100, 50, 0], [200, 100, 50, 255]]], np.uint8)
    out = read_image(save(tmp_path, "rgba.png", Image.fromarray(arr, "RGBA")))
    assert out.shape == (1, 3, 3)
    np.testing.assert_array_equal(out[0, 0], [100, 50, 25])  # round(c * 128 / 255)
    np.testing.assert_array_equal(out[0, 1], [0, 0, 0])
    np.testing.assert_array_equal(out[0, 2], [200, 100, 50])


def test_la_composited_over_black(tmp_path):
    arr = np.array([[[200, 255], [200, 0], [255, 51]]], np.uint8)
    out = read_image(save(tmp_path, "la.png", Image.fromarray(arr, "LA")))
    np.testing.assert_array_equal(out[0, :, 0], [200, 0, 51])
    np.testing.assert_array_equal(out[0, :, 0], out[0, :, 2])


def test_palette(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([0, 0, 0, 250, 10, 20] + [0] * (254 * 3))
    im.putpixel((1, 0), 1)
    out = read_image(save(tmp_path, "p.png", im))
    np.testing.assert_array_equal(out[0], [[0, 0, 0], [250, 10, 20]])
    # With a transparent index: composited over black like RGBA.
    im2 = Image.new("P", (2, 1))
    im2.putpalette([90, 90, 90, 250, 10, 20] + [0] * (254 * 3))
    im2.putpixel((1, 0), 1)
    out2 = read_image(save(tmp_path, "pt.png", im2, transparency=1))
    np.testing.assert_array_equal(out2[0], [[90, 90, 90], [0, 0, 0]])


def test_cmyk(tmp_path):
    arr = np.array([[[0, 0, 0, 0], [0, 0, 0, 255], [255, 0, 0, 0], [0, 255, 255, 0]]], np.uint8)
    out = read_image(save(tmp_path, "c.tif", Image.fromarray(arr, "CMYK")))
    assert out.shape == (1, 4, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], [[255, 255, 255], [0, 0, 0], [0, 255, 255], [255, 0, 0]])


def test_truncated_png_raises_naming_file(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    p = save(tmp_path, "cut.png", Image.fromarray(arr))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as ei:
        read_image(p)
    assert "cut.png" in str(ei.value) and ei.value.path == p
    assert "truncated" in ei.value.reason


def test_truncated_even_if_global_flag_enabled(tmp_path, monkeypatch):
    p = rgb_png(tmp_path / "ok.png")
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageReadError, match="LOAD_TRUNCATED_IMAGES"):
        read_image(p)


def test_text_file_named_png(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is not an image\n")
    with pytest.raises(ImageReadError, match="notes.png") as ei:
        read_image(p)
    assert "not a recognised image" in ei.value.reason
    assert isinstance(ei.value, ValueError)


def test_missing_empty_and_directory(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)


# ----------------------------------------------------------------------------- masks


def test_read_mask_variants(tmp_path):
    m = np.zeros((4, 6), np.uint8)
    m[1:3, 2:5] = 255
    expect = m > 0
    np.testing.assert_array_equal(read_mask(save(tmp_path, "m.png", Image.fromarray(m))), expect)
    m16 = expect.astype(np.uint16)  # value 1 in 16 bit must stay a defect
    got = read_mask(save(tmp_path, "m16.png", Image.fromarray(m16)))
    assert got.dtype == bool
    np.testing.assert_array_equal(got, expect)
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[expect] = (255, 0, 0)
    np.testing.assert_array_equal(read_mask(save(tmp_path, "mrgb.png", Image.fromarray(rgb))), expect)
    pm = Image.fromarray(expect.astype(np.uint8), "P")
    pm.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)  # colours must not matter
    np.testing.assert_array_equal(read_mask(save(tmp_path, "mp.png", pm)), expect)


def test_read_mask_resize_nearest(tmp_path):
    m = np.zeros((10, 10), np.uint8)
    m[2:5, 3:7] = 255
    p = save(tmp_path, "m.png", Image.fromarray(m))
    big = read_mask(p, size=40)
    assert big.shape == (40, 40) and big.dtype == bool
    assert big.sum() == 16 * 12  # exact block replication
    rect = read_mask(p, size=(20, 30))  # (height, width)
    assert rect.shape == (20, 30)
    t = Preprocess(37).mask(read_mask(p))
    assert t.shape == (1, 37, 37) and t.dtype == torch.float32
    assert set(torch.unique(t).tolist()) == {0.0, 1.0}


# ----------------------------------------------------------------------------- list_images


def test_list_images_sorted_case_insensitive(tmp_path):
    for n in ["b.PNG", "a.jpg", "c.JpEg", "d.bmp", "e.tif", "f.TIFF", "g.webp", "z.txt", "._a.png", ".h.png"]:
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["a.jpg", "b.PNG", "c.JpEg", "d.bmp", "e.tif", "f.TIFF", "g.webp"]
    assert set(IMAGE_EXTENSIONS) == {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
    with pytest.raises(FileNotFoundError, match="missing"):
        list_images(tmp_path / "missing")


# ----------------------------------------------------------------------------- Preprocess


def test_preprocess_shapes_and_crop():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    t = Preprocess()(img)
    assert t.shape == (3, 256, 256) and t.dtype == torch.float32
    assert 0.0 <= t.min() and t.max() <= 1.0
    pc = Preprocess(256, 224)
    assert pc.output_size == 224 and Preprocess().output_size == 256
    assert pc(img).shape == (3, 224, 224)
    # Crop is centred: at the resize size already, crop = the middle window.
    img256 = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    np.testing.assert_allclose(pc(img256).numpy(), img256[16:240, 16:240].transpose(2, 0, 1) / 255.0, atol=1e-7)
    m = np.zeros((256, 256), bool)
    m[16, 16] = True  # first pixel inside the crop
    mt = pc.mask(m)
    assert mt.shape == (1, 224, 224) and mt[0, 0, 0] == 1 and mt.sum() == 1


def test_preprocess_dict_roundtrip_and_validation():
    for p in (Preprocess(), Preprocess(329, 288)):
        d = p.to_dict()
        assert json.loads(json.dumps(d)) == d
        assert Preprocess.from_dict(d) == p
    with pytest.raises(ValueError):
        Preprocess(256, 300)
    with pytest.raises(ValueError):
        Preprocess.from_dict({"image_size": 256, "normalize": "imagenet"})
    with pytest.raises(ValueError):
        Preprocess()(np.zeros((4, 4), np.uint8))


# ----------------------------------------------------------------------------- MVTec AD


def build_mvtec(root: Path, missing_mask=False) -> Path:
    for i in range(3):
        rgb_png(root / "train" / "good" / f"{i:03d}.png")
    rgb_png(root / "test" / "good" / "000.png")
    rgb_png(root / "test" / "good" / "001.png")
    for d in ("scratch", "crack"):
        for i in range(2):
            rgb_png(root / "test" / d / f"{i:03d}.png")
            if not (missing_mask and d == "scratch" and i == 1):
                mask_png(root / "ground_truth" / d / f"{i:03d}_mask.png")
    (root / "readme.txt").write_text("x")
    return root


def test_mvtec_tiny_layout(tmp_path):
    root = build_mvtec(tmp_path / "widget")
    assert is_mvtec_category(root) and not is_mvtec3d_category(root)
    cat = MVTecCategory(root)
    assert cat.name == "widget"
    assert len(cat.train) == 3 and all(s.label == 0 and s.mask_path is None for s in cat.train)
    assert cat.defect_types == ("crack", "scratch")
    assert [(s.defect_type, s.path.name) for s in cat.test] == [
        ("crack", "000.png"),
        ("crack", "001.png"),
        ("good", "000.png"),
        ("good", "001.png"),
        ("scratch", "000.png"),
        ("scratch", "001.png"),
    ]
    for s in cat.test:
        assert s.label == int(s.defect_type != "good")
        if s.label:
            assert s.mask_path == root / "ground_truth" / s.defect_type / f"{s.path.stem}_mask.png"
        else:
            assert s.mask_path is None
    assert cat.validation == []
    assert isinstance(load_dataset(root), MVTecCategory)


def test_mvtec_missing_mask_and_bad_layout(tmp_path):
    root = build_mvtec(tmp_path / "widget", missing_mask=True)
    with pytest.raises(DatasetLayoutError, match=r"scratch[/\\]001.png") as ei:
        MVTecCategory(root)
    assert "001_mask.png" in str(ei.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="empty"):
        MVTecCategory(tmp_path / "empty")
    with pytest.raises(DatasetLayoutError, match="neither"):
        load_dataset(tmp_path / "empty")
    assert not is_mvtec_category(tmp_path / "empty")


def test_load_dataset_hints_at_categories(tmp_path):
    build_mvtec(tmp_path / "ds" / "widget")
    with pytest.raises(DatasetLayoutError, match="widget"):
        load_dataset(tmp_path / "ds")


@requires_shared_data
@pytest.mark.realdata
def test_mvtec_bottle_real():
    cat = load_dataset(MVTEC_BOTTLE)
    assert isinstance(cat, MVTecCategory) and cat.name == "bottle"
    assert len(cat.train) == 209
    assert len(cat.test) == 83
    good = [s for s in cat.test if s.label == 0]
    bad = [s for s in cat.test if s.label == 1]
    assert len(good) == 20 and len(bad) == 63
    assert all(s.mask_path is not None and s.mask_path.is_file() for s in bad)
    assert cat.defect_types == ("broken_large", "broken_small", "contamination")
    assert [s.path for s in cat.train] == sorted(s.path for s in cat.train)
    img = read_image(bad[0].path)
    assert img.shape == (900, 900, 3) and img.dtype == np.uint8
    m = read_mask(bad[0].mask_path)
    assert m.shape == (900, 900) and 0 < m.sum() < m.size


# ----------------------------------------------------------------------------- MVTec 3D-AD


def build_mvtec3d(root: Path, missing_gt=False) -> Path:
    for i in range(2):
        rgb_png(root / "train" / "good" / "rgb" / f"{i:03d}.png")
        (root / "train" / "good" / "xyz").mkdir(parents=True, exist_ok=True)
    rgb_png(root / "validation" / "good" / "rgb" / "000.png")
    rgb_png(root / "test" / "good" / "rgb" / "000.png")
    mask_png(root / "test" / "good" / "gt" / "000.png", box=(0, 0, 0, 0))
    for d in ("hole", "cut"):
        for i in range(2):
            rgb_png(root / "test" / d / "rgb" / f"{i:03d}.png")
            if not (missing_gt and d == "cut" and i == 0):
                mask_png(root / "test" / d / "gt" / f"{i:03d}.png")
    return root


def test_mvtec3d_layout(tmp_path):
    root = build_mvtec3d(tmp_path / "cookie")
    assert is_mvtec3d_category(root) and not is_mvtec_category(root)
    cat = mvtec3d_category(root)
    assert isinstance(load_dataset(root), MVTec3DCategory)
    assert cat.name == "cookie"
    assert len(cat.train) == 2 and len(cat.validation) == 1
    assert cat.defect_types == ("cut", "hole")
    assert [(s.defect_type, s.path.name, s.label) for s in cat.test] == [
        ("cut", "000.png", 1),
        ("cut", "001.png", 1),
        ("good", "000.png", 0),
        ("hole", "000.png", 1),
        ("hole", "001.png", 1),
    ]
    for s in cat.test:
        if s.label:
            assert s.mask_path == s.path.parent.parent / "gt" / s.path.name
        else:
            assert s.mask_path is None
    masks = load_masks(cat.test, Preprocess(16))
    assert masks.shape == (5, 1, 16, 16)
    assert masks[2].sum() == 0 and all(masks[i].sum() > 0 for i in (0, 1, 3, 4))


def test_mvtec3d_missing_gt_raises(tmp_path):
    root = build_mvtec3d(tmp_path / "cookie", missing_gt=True)
    with pytest.raises(DatasetLayoutError, match=r"cut[/\\]rgb[/\\]000.png"):
        mvtec3d_category(root)


# ----------------------------------------------------------------------------- FolderDataset


def test_folder_dataset_mask_rules(tmp_path):
    for i in range(2):
        rgb_png(tmp_path / "ok" / f"n{i}.png")
    rgb_png(tmp_path / "bad" / "a.png")
    rgb_png(tmp_path / "bad" / "b.jpg")
    rgb_png(tmp_path / "bad" / "c.png")
    mask_png(tmp_path / "masks" / "a_mask.png")
    mask_png(tmp_path / "masks" / "b_mask.bmp")  # other extension: still found
    ds = FolderDataset(tmp_path / "ok", [tmp_path / "bad"], mask_dir=tmp_path / "masks")
    assert [s.path.name for s in ds.normal] == ["n0.png", "n1.png"]
    got = {s.path.name: s.mask_path for s in ds.abnormal}
    assert got == {
        "a.png": tmp_path / "masks" / "a_mask.png",
        "b.jpg": tmp_path / "masks" / "b_mask.bmp",
        "c.png": None,
    }
    assert ds.abnormal_without_mask == [tmp_path / "bad" / "c.png"]
    assert all(s.label == 1 and s.defect_type == "bad" for s in ds.abnormal)
    assert ds.defect_types == ("bad",)

    # {name} rule, mapping of defect types, per-type subfolder of mask_dir
    mask_png(tmp_path / "gt" / "dent" / "a.png")
    ds2 = FolderDataset(tmp_path / "ok", {"dent": tmp_path / "bad"}, mask_dir=tmp_path / "gt", mask_name="{name}")
    assert {s.path.name: s.mask_path for s in ds2.abnormal}["a.png"] == tmp_path / "gt" / "dent" / "a.png"
    assert ds2.abnormal[0].defect_type == "dent"
    # no mask_dir: every abnormal image without mask
    assert all(s.mask_path is None for s in FolderDataset(tmp_path / "ok", [tmp_path / "bad"]).abnormal)
    with pytest.raises(ValueError, match="mapping"):
        FolderDataset(tmp_path / "ok", [tmp_path / "bad", tmp_path / "x" / "bad"])


def test_sample_validation(tmp_path):
    s = Sample(str(tmp_path / "a.png"), 1, "x", str(tmp_path / "a_mask.png"))
    assert isinstance(s.path, Path) and isinstance(s.mask_path, Path) and s.name == "a.png"
    with pytest.raises(ValueError):
        Sample(tmp_path / "a.png", 2, "x", None)


# ----------------------------------------------------------------------------- demo


SMALL = dict(n_train=4, n_test_good=2, n_test_defect=6, size=96)


def test_demo_dataset_deterministic_and_valid(tmp_path):
    a = make_demo_dataset(tmp_path / "a", seed=3, **SMALL)
    b = make_demo_dataset(tmp_path / "b", seed=3, **SMALL)
    c = make_demo_dataset(tmp_path / "c", seed=4, **SMALL)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    for rel in files:
        np.testing.assert_array_equal(np.asarray(Image.open(a / rel)), np.asarray(Image.open(b / rel)))
    assert not np.array_equal(read_image(a / files[-1]), read_image(c / files[-1]))

    cat = MVTecCategory(a)
    assert len(cat.train) == 4 and len(cat.test) == 8
    assert cat.defect_types == ("hole", "scratch", "stain")
    train = np.stack([read_image(s.path) for s in cat.train]).astype(float)
    assert train.std(axis=0).mean() > 1.0  # per-image jitter: not one picture repeated
    for s in cat.test:
        img = read_image(s.path)
        assert img.shape == (96, 96, 3)
        if s.label:
            m = read_mask(s.mask_path)
            assert m.shape == (96, 96) and m.sum() >= 5
            assert m.sum() < 0.2 * m.size
            ys, xs = np.nonzero(m)  # inside the image, away from the border (on the part)
            assert ys.min() > 0 and xs.min() > 0 and ys.max() < 95 and xs.max() < 95


def test_demo_dataset_reused_and_regenerated(tmp_path):
    a = make_demo_dataset(tmp_path, seed=0, **SMALL)
    marker = a / ".defectkit_demo.json"
    first = a / "train" / "good" / "000.png"
    mtime = first.stat().st_mtime_ns
    assert make_demo_dataset(tmp_path, seed=0, **SMALL) == a
    assert first.stat().st_mtime_ns == mtime  # not rewritten
    marker.unlink()  # as if interrupted before completion
    first.unlink()
    assert make_demo_dataset(tmp_path, seed=0, **SMALL) == a
    assert marker.is_file() and first.is_file()
    (a / "precious.txt").write_text("user data")
    marker.unlink()
    with pytest.raises(FileExistsError):
        make_demo_dataset(tmp_path, seed=0, **SMALL)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


# ----------------------------------------------------------------------------- batches


def test_load_images_skip_and_raise(tmp_path):
    good = [rgb_png(tmp_path / f"g{i}.png", value=(i * 50, 0, 0), size=(20, 10)) for i in range(3)]
    text = tmp_path / "text.png"
    text.write_text("hello")
    cut = tmp_path / "cut.png"
    data = save(
        tmp_path, "full.png", Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    ).read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    items = [good[0], text, Sample(good[1], 0, "good"), cut, str(good[2])]
    x, kept, errors = load_images(items, Preprocess(16, 8), on_error="skip")
    assert x.shape == (3, 3, 8, 8) and x.dtype == torch.float32
    assert kept == [items[0], items[2], items[4]]
    assert [p for p, _ in errors] == [text, cut]
    assert all(isinstance(r, str) and r for _, r in errors)
    np.testing.assert_allclose(x[:, 0, 0, 0].numpy(), [0, 50 / 255, 100 / 255], atol=1e-6)
    with pytest.raises(ImageReadError, match="text.png"):
        load_images(items, Preprocess(16))
    empty, k, e = load_images([], Preprocess(16))
    assert empty.shape == (0, 3, 16, 16) and k == [] and e == []


def test_load_masks_zeros_for_missing(tmp_path):
    img = rgb_png(tmp_path / "a.png")
    m = mask_png(tmp_path / "a_mask.png", box=(0, 0, 4, 6))  # left half
    samples = [Sample(img, 0, "good"), Sample(img, 1, "x", m), Sample(img, 1, "x", None)]
    out = load_masks(samples, Preprocess(8))
    assert out.shape == (3, 1, 8, 8)
    assert out[0].sum() == 0 and out[2].sum() == 0
    assert out[1, 0, :, :4].min() == 1 and out[1, 0, :, 4:].max() == 0
    bad = Sample(img, 1, "x", tmp_path / "nope_mask.png")
    with pytest.raises(ImageReadError, match="nope_mask.png"):
        load_masks([bad], Preprocess(8))
