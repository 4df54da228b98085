"""``resize="keep"`` (padding never scores) and tiling (windows at native resolution, stitched maps)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from texture_files import write_textures

from defectkit.data import MVTecCategory, Preprocess, load_masks, make_demo_dataset
from defectkit.data.batches import load_batch
from defectkit.data.splits import split_validation
from defectkit.data.tiling import Stitcher, Tiling, blend_window, tile_starts
from defectkit.deploy.scorer import TorchScorer
from defectkit.engine.evaluate import evaluate_model
from defectkit.metrics import evaluate
from defectkit.models import load_model
from defectkit.models.factory import build_model

torch.set_num_threads(1)

METHODS = ["patchcore", "simplenet", "realnet", "prn", "mlff"]


def tiny_params(name, root: Path):
    """The fastest settings of each method that still train (tests only)."""
    textures = root / "textures"
    if not textures.is_dir():
        write_textures(textures)
    return {
        "patchcore": {},
        "simplenet": dict(epochs=2, feature_batch_size=256),
        "realnet": dict(epochs=1, pool_size=8, textures=str(textures)),
        "prn": dict(
            epochs=1,
            pool_size=8,
            train_batch_size=4,
            head_dim=2,
            decoder_channels=(8, 8, 8),
            val_anomalies_per_image=1,
            val_fraction=0.25,
            textures=str(textures),
        ),
        "mlff": dict(
            epochs=1,
            repeat=2,
            width=8,
            feature_dim=4,
            tem_levels=4,
            ptfem_levels=3,
            train_batch_size=4,
            val_fraction=0.25,
            val_anomalies_per_image=1,
        ),
    }[name]


def stretch(root: Path, width: int, height: int) -> Path:
    """Resize every image and mask of a demo category in place to width x height (not square)."""
    for p in root.rglob("*.png"):
        im = Image.open(p)
        resample = Image.Resampling.NEAREST if "ground_truth" in p.parts else Image.Resampling.BILINEAR
        im.resize((width, height), resample).save(p)
    return root


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A demo category of 64 x 32 px images (aspect ratio 2)."""
    root = tmp_path_factory.mktemp("wide")
    data = MVTecCategory(
        stretch(make_demo_dataset(root / "data", n_train=8, n_test_good=2, n_test_defect=3, size=64), 64, 32)
    )
    return root, data


# --------------------------------------------------------------------------- Preprocess


def test_keep_scales_the_long_side_pads_and_records_the_box():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (30, 60, 3), dtype=np.uint8)  # h 30, w 60
    pre = Preprocess(32, resize="keep")
    arr, box = pre.apply(img)
    assert arr.shape == (32, 32, 3) and (box.top, box.left, box.height, box.width) == (8, 0, 16, 32)
    assert not box.full and box.mask().sum() == 16 * 32
    assert (arr[:8] == 0).all() and (arr[24:] == 0).all()  # black padding above and below
    expected = np.asarray(Image.fromarray(img).resize((32, 16), Image.Resampling.BILINEAR))
    assert np.array_equal(arr[8:24], expected)
    m = np.zeros((30, 60), bool)
    m[0:2, 0:4] = True
    mt = pre.mask_array(m)
    assert mt.shape == (32, 32) and mt[8, 0] and not mt[:8].any()  # the mask moves with the image
    square = Preprocess(32)
    assert square.apply(img)[1].full and square.valid_box(30, 60).full
    # a square image is the same in both modes
    sq = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    assert np.array_equal(pre.apply(sq)[0], square.apply(sq)[0]) and pre.apply(sq)[1].full
    # crop after padding: the box is clipped to the crop window
    cropped = Preprocess(32, 24, resize="keep").valid_box(30, 60)
    assert (cropped.top, cropped.left, cropped.height, cropped.width, cropped.size) == (4, 0, 16, 24, 24)


def test_keep_round_trips_and_is_recorded_only_when_not_default():
    assert Preprocess(64).to_dict() == {"image_size": 64, "crop_size": None}
    d = Preprocess(64, resize="keep").to_dict()
    assert d["resize"] == "keep" and Preprocess.from_dict(d) == Preprocess(64, resize="keep")
    with pytest.raises(ValueError, match="resize"):
        Preprocess(64, resize="stretch")


def test_metrics_leave_invalid_pixels_out_of_the_pool():
    rng = np.random.default_rng(1)
    maps = rng.random((3, 8, 8))
    masks = np.zeros((3, 8, 8), bool)
    masks[1, 2:4, 2:4] = True
    masks[2, 5:7, 1:3] = True
    valid = np.zeros((3, 8, 8), bool)
    valid[:, :, :6] = True  # the last two columns are padding
    maps_pad = maps.copy()
    maps_pad[:, :, 6:] = 100.0  # padding that would dominate every pixel metric if counted
    labels, scores = np.array([0, 1, 1]), np.array([0.1, 0.9, 0.8])
    got = evaluate(labels, scores, masks, maps_pad, valid=valid)
    want = evaluate(labels, scores, masks[:, :, :6], maps[:, :, :6])
    for k in ("pixel_auroc", "aupro", "pixel_ap", "pixel_f1_max"):
        assert got[k] == pytest.approx(want[k]), k


# --------------------------------------------------------------------------- keep, every method


@pytest.mark.parametrize("name", METHODS)
def test_padding_never_scores_above_the_normal_background(wide, name):
    root, data = wide
    model = build_model(
        name,
        tiny_params(name, root),
        image_size=64,
        device="cpu",
        seed=0,
        resize="keep",
        cache_dir=str(root / "cache"),
        use_cache=False,
    ).fit(data, progress=False)
    batch, _, _ = load_batch(data.test, model.preprocess)
    assert batch.padded and batch.boxes[0].height == 32 and batch.boxes[0].width == 64
    scores, maps = model.predict(batch)
    valid = batch.valid().numpy()
    for i in range(len(maps)):
        background = maps[i][valid[i]]
        assert maps[i][~valid[i]].max() <= background.min()  # padding never above the real background
    # the image score is the method's own rule over the real pixels: with every pixel declared
    # real it is exactly the plain prediction, so unpadded images score as in square mode
    x = batch.images
    full = torch.ones((len(x), 64, 64), dtype=torch.bool)
    with torch.inference_mode():
        s_valid, m_valid = model._predict_valid(x, full)
        s_plain, m_plain = model._predict_tensor(x)
    assert torch.allclose(s_valid, s_plain) and torch.allclose(m_valid, m_plain)
    # and padding stays out of the evaluation
    result = evaluate_model(model, data, warmup=False)
    assert result.valid is not None and result.valid.sum() == len(data.test) * 64 * 32
    assert np.array_equal(result.scores.astype(np.float32), scores.astype(np.float32))


def test_keep_model_file_and_scorer_keep_the_padding_rule(wide, tmp_path):
    root, data = wide
    model = build_model("patchcore", {}, image_size=64, device="cpu", resize="keep", use_cache=False).fit(
        data, progress=False
    )
    path = model.save(tmp_path / "keep.pt")
    loaded = load_model(path, device="cpu")
    assert loaded.resize == "keep" and loaded.preprocess == model.preprocess
    a, ma = model.predict(data.test)
    b, mb = loaded.predict(data.test)
    assert np.allclose(a, b) and np.allclose(ma, mb)
    scorer = TorchScorer(loaded)
    batch, ok, errors = scorer.load_batch([s.path for s in data.test])
    s, m = scorer.score(batch)
    assert np.allclose(s, a) and not errors
    assert scorer.display_images(batch)[0].shape == (64, 64, 3)


def test_keep_on_square_images_equals_square(tmp_path):
    data = MVTecCategory(make_demo_dataset(tmp_path / "sq", n_train=6, n_test_good=2, n_test_defect=3, size=64))
    a = build_model("patchcore", {}, image_size=64, device="cpu", use_cache=False).fit(data, progress=False)
    b = build_model("patchcore", {}, image_size=64, device="cpu", resize="keep", use_cache=False).fit(
        data, progress=False
    )
    ra, rb = evaluate_model(a, data, warmup=False), evaluate_model(b, data, warmup=False)
    assert ra.metrics == rb.metrics and rb.valid is None


# --------------------------------------------------------------------------- tiling


def test_tile_grid_covers_every_pixel_with_whole_windows():
    assert tile_starts(100, 32, 8) == [0, 24, 48, 68]
    assert tile_starts(20, 32, 8) == [0]
    t = Tiling(32, 8)
    cover = np.zeros((70, 100), int)
    for top, left in t.grid(70, 100):
        cover[top : top + 32, left : left + 32] += 1
    assert cover.min() >= 1 and max(top for top, _ in t.grid(70, 100)) == 70 - 32
    w = blend_window(32, 8)
    assert w.min() > 0 and w[16, 16] == 1.0 and w[0, 16] < w[4, 16] < w[8, 16]
    with pytest.raises(ValueError, match="overlap"):
        Tiling(32, 32)


def test_stitching_blends_overlaps_into_the_same_map():
    rng = np.random.default_rng(0)
    truth = rng.random((70, 100)).astype(np.float32)
    t = Tiling(32, 12)
    st = Stitcher(t, 70, 100)
    for top, left in t.grid(70, 100):
        st.add(truth[top : top + 32, left : left + 32], top, left)
    assert np.allclose(st.result(), truth, atol=1e-6)  # windows that agree give back the map
    small = Stitcher(t, 20, 24)  # an image smaller than one window
    small.add(np.ones((32, 32)), 0, 0)
    assert small.result().shape == (20, 24)
    incomplete = Stitcher(t, 70, 100)
    incomplete.add(truth[:32, :32], 0, 0)
    with pytest.raises(ValueError, match="uncovered"):
        incomplete.result()


def test_split_by_groups_holds_out_whole_groups():
    groups = np.repeat(np.arange(10), 4)  # 10 images x 4 tiles
    train, val = split_validation(len(groups), 0.2, seed=0, groups=groups)
    assert set(groups[train]).isdisjoint(groups[val]) and len(set(groups[val])) == 2
    assert len(train) + len(val) == 40
    assert split_validation(8, 0.2, seed=0, groups=np.repeat([0, 1], 4))[1] is None  # two images: none held out


def textured(rng, h, w):
    """A fine random texture (normal surface) as uint8 RGB."""
    base = rng.normal(128, 20, (h, w, 1))
    return np.clip(np.repeat(base, 3, axis=2), 0, 255).astype(np.uint8)


H, W = 128, 160


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """Normal 160 x 128 frames and one test frame with a 6 px defect (tile 64 at native resolution)."""
    root = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        p = root / "train" / f"{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(textured(rng, H, W)).save(p)
        paths.append(p)
    bad = textured(rng, H, W)
    bad[80:86, 100:106] = (250, 20, 20)
    mask = np.zeros((H, W), bool)
    mask[80:86, 100:106] = True
    (root / "test").mkdir()
    Image.fromarray(bad).save(root / "test" / "bad.png")
    Image.fromarray(textured(rng, H, W)).save(root / "test" / "good.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(root / "test" / "bad_mask.png")
    return root, paths, mask


@pytest.mark.parametrize("name", METHODS)
def test_tiled_model_predicts_stitched_native_maps(large, name):
    root, paths, mask = large
    model = build_model(
        name,
        tiny_params(name, root),
        image_size=64,
        tile_size=64,
        tile_overlap=16,
        device="cpu",
        seed=0,
        cache_dir=str(root / "cache"),
        use_cache=False,
    ).fit(paths, progress=False)
    info = model.fit_info_["tiles"]
    assert info == {"size": 64, "overlap": 16, "source_images": 4, "tiles": 4 * Tiling(64, 16).count(H, W)}
    if "val_image_names" in model.fit_info_ and model.fit_info_["val_image_names"]:
        held = {n.split("_y")[0] for n in model.fit_info_["val_image_names"]}
        assert len(held) == 2  # two whole source images held out, not tiles scattered over all four
    scores, maps = model.predict([root / "test" / "bad.png", root / "test" / "good.png"])
    assert maps.shape == (2, H, W) and np.isfinite(maps).all()
    # the image score is the method's rule read off the stitched map
    rule = model.map_image_scores(torch.from_numpy(maps[:, None]), torch.ones((2, H, W), dtype=torch.bool))
    assert np.allclose(scores, rule.numpy(), atol=1e-6)


def test_tiling_finds_a_small_defect_and_evaluates_at_native_resolution(large, tmp_path):
    root, paths, mask = large
    model = build_model(
        "patchcore",
        {},
        image_size=64,
        tile_size=64,
        tile_overlap=16,
        device="cpu",
        cache_dir=str(root / "cache"),
        use_cache=False,
    ).fit(paths, progress=False)
    scores, maps = model.predict([root / "test" / "bad.png", root / "test" / "good.png"])
    peak = np.unravel_index(np.argmax(maps[0]), maps[0].shape)
    assert mask[peak] and scores[0] > scores[1]
    from defectkit.data import Sample

    test = [
        Sample(root / "test" / "bad.png", 1, "spot", root / "test" / "bad_mask.png"),
        Sample(root / "test" / "good.png", 0, "good", None),
    ]
    result = evaluate_model(model, test, warmup=False)
    assert result.resolution == "native" and result.maps.shape == (2, H, W)
    assert result.masks[0].sum() == 36 and result.metrics["image_auroc"] == 1.0
    # model file round trip; the scorer hands back full-resolution images and maps
    loaded = load_model(model.save(tmp_path / "tiled.pt"), device="cpu")
    assert loaded.tiling_ == model.tiling_
    scorer = TorchScorer(loaded)
    batch, ok, _ = scorer.load_batch([root / "test" / "bad.png"])
    s, m = scorer.score(batch)
    assert m.shape == (1, H, W) and np.isclose(s[0], scores[0])
    assert scorer.display_images(batch)[0].shape == (H, W, 3)


def test_tiled_prn_learns_from_tiles_of_its_seen_defects(large):
    root, paths, mask = large
    from defectkit.data import Sample

    seen = [Sample(root / "test" / "bad.png", 1, "spot", root / "test" / "bad_mask.png")]
    model = build_model(
        "prn",
        tiny_params("prn", root),
        image_size=64,
        tile_size=64,
        tile_overlap=16,
        device="cpu",
        cache_dir=str(root / "cache"),
        use_cache=False,
    )
    tiles = model.tile_samples(seen)
    assert tiles and all(load_masks([t], Preprocess(64))[0].sum() > 0 for t in tiles)
    model.fit(paths, progress=False, seen=seen)
    assert model.fit_info_["seen_anomalies"] == ["spot/bad.png"] and model.fit_info_["seen_tiles"] == len(tiles)


def test_tiling_parameters_are_checked():
    with pytest.raises(ValueError, match="overlap"):
        build_model("patchcore", {}, tile_size=64, tile_overlap=64, device="cpu")
    with pytest.raises(ValueError, match="crop_size"):
        build_model("patchcore", {}, tile_size=64, crop_size=32, image_size=64, device="cpu")


def test_cli_train_test_predict_with_keep_and_tiles(wide, large, tmp_path, capsys):
    from defectkit.cli import main

    root, data = wide
    small = ["--image-size", "64", "--no-cache", "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]
    assert (
        main(["train", "--data", str(data.root), "--out", str(tmp_path / "keep.pt"), "--resize", "keep"] + small) == 0
    )
    assert "resize keep" in capsys.readouterr().out
    assert (
        main(
            [
                "test",
                "--model",
                str(tmp_path / "keep.pt"),
                "--data",
                str(data.root),
                "--out",
                str(tmp_path / "keep_run"),
                "--no-cache",
            ]
        )
        == 0
    )
    assert (tmp_path / "keep_run" / "metrics.json").is_file()
    big_root, _, _ = large
    assert (
        main(
            [
                "train",
                "--data",
                str(big_root / "train"),
                "--out",
                str(tmp_path / "tiled.pt"),
                "--tile",
                "64",
                "--tile-overlap",
                "16",
            ]
            + small
        )
        == 0
    )
    assert "tiles 64px overlap 16px" in capsys.readouterr().out
    assert (
        main(
            [
                "predict",
                "--model",
                str(tmp_path / "tiled.pt"),
                "--input",
                str(big_root / "test" / "bad.png"),
                str(big_root / "test" / "good.png"),
                "--out",
                str(tmp_path / "pred"),
            ]
        )
        == 0
    )
    overlay = Image.open(tmp_path / "pred" / "overlays" / "bad.png")
    assert overlay.size == (W, H)  # drawn at native resolution
