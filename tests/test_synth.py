"""Tests for defectkit.synth: masks, blending, every generator, SDAS, preview and CLI.

Small images (64 px) keep the file fast; real-data tests skip when ../shared/data is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from texture_files import write_textures

from defectkit.synth import (
    KINDS,
    CutPaste,
    ExtendedAnomaly,
    HOASource,
    PerlinMask,
    ShapeMask,
    SynthResult,
    TargetArea,
    add_feature_noise,
    alpha_blend,
    blend,
    estimate_foreground,
    foreground_mask,
    make_generator,
    perlin_noise,
    poisson_clone,
    preview_grid,
    shuffle_tiles,
)
from defectkit.synth.augment import COLOR_OPS, affine_patch, apply_color_op, color_augment

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BOTTLE = DATA / "mvtec_ad" / "bottle"
DTD = DATA / "dtd_subset"
needs_data = pytest.mark.skipif(not BOTTLE.is_dir(), reason=f"real data not found at {DATA} (../shared/data)")

S = 64


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The tiny SDAS nets are far faster single-threaded on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def disk_image(size=S, radius=None, seed=0):
    """A textured dark disk on a light background: an 'object' with an obvious foreground."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    r = radius or size * 0.35
    inside = (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 <= r * r
    img = np.full((size, size, 3), 235, np.uint8)
    img[inside] = (rng.integers(20, 90, (int(inside.sum()), 3))).astype(np.uint8)
    return img, inside


@pytest.fixture(scope="module")
def textures(tmp_path_factory):
    return write_textures(tmp_path_factory.mktemp("textures"), shape=(40, 50), seed=1)


@pytest.fixture(scope="module")
def defects():
    img, _ = disk_image(seed=5)
    mask = np.zeros((S, S), bool)
    mask[20:28, 30:36] = True
    img[mask] = np.random.default_rng(2).integers(0, 256, (int(mask.sum()), 3), dtype=np.uint8)
    return [(img, mask)]


def all_generators(textures, defects, **kw):
    pool = _FakePool()
    return {
        "dtd": make_generator("dtd", textures=textures, **kw),
        "hoa": make_generator("hoa", **kw),
        "ea": make_generator("ea", defects=defects, **kw),
        "cutpaste": make_generator("cutpaste", **kw),
        "cutpaste_scar": make_generator("cutpaste_scar", **kw),
        "confetti": make_generator("confetti", **kw),
        "sdas": make_generator("sdas", pool=pool, **kw),
    }


class _FakePool:
    """Stands in for an SDAS SamplePool (tested separately)."""

    def draw(self, rng):
        return np.random.default_rng(int(rng.integers(1 << 30))).integers(0, 256, (16, 16, 3), dtype=np.uint8)


# -- blending ---------------------------------------------------------------------------


@pytest.mark.parametrize("b", [0.0, 0.3, 0.75, 1.0])
def test_blend_formula_exact_on_constant_images(b):
    a, c = 40.0, 200.0
    image = np.full((8, 9, 3), a, np.float32)
    source = np.full((8, 9, 3), c, np.float32)
    mask = (np.random.default_rng(0).random((8, 9)) > 0.5).astype(np.float32)
    out = alpha_blend(image, source, mask, b)
    expected_in = (1 - np.float32(b)) * np.float32(a) + np.float32(b) * np.float32(c)
    assert np.array_equal(out[mask == 1], np.full(((mask == 1).sum(), 3), expected_in, np.float32))
    assert np.array_equal(out[mask == 0], np.full(((mask == 0).sum(), 3), a, np.float32))
    u8 = blend(image.astype(np.uint8), source.astype(np.uint8), mask, b)
    assert u8.dtype == np.uint8 and np.all(u8[mask == 1] == np.uint8(round(float(expected_in))))


def test_blend_soft_mask_follows_formula():
    rng = np.random.default_rng(3)
    image, source = rng.random((5, 6, 3)), rng.random((5, 6, 3))
    mask, b = rng.random((5, 6)), 0.6
    m = mask[..., None]
    expected = (1 - m) * image + (1 - b) * m * image + b * m * source
    np.testing.assert_allclose(alpha_blend(image, source, mask, b), expected, rtol=1e-5, atol=1e-6)


def test_poisson_clone_is_seamless():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, (24, 24, 3)).astype(np.uint8)
    mask = np.zeros((24, 24), np.float32)
    mask[6:15, 5:20] = 1
    # a source that differs from the image by a constant has the same gradients: cloning gives the image back
    cloned = poisson_clone(image, image.astype(np.float32) + 37.0, mask)
    np.testing.assert_allclose(cloned, image, atol=1e-3)
    # a constant source on a constant image: the inside takes the boundary value
    flat = np.full((24, 24, 3), 90, np.uint8)
    np.testing.assert_allclose(poisson_clone(flat, np.full_like(flat, 250), mask), 90, atol=1e-3)
    # outside the mask nothing changes; a mask touching the border still solves
    mask[0:4, 0:4] = 1
    out = poisson_clone(image, rng.integers(0, 255, image.shape).astype(np.uint8), mask)
    assert np.array_equal(out[mask == 0], image[mask == 0].astype(np.float32))
    assert np.isfinite(out).all()


# -- Perlin and masks ---------------------------------------------------------------------


def test_perlin_noise_range_and_determinism():
    a = perlin_noise((40, 56), (4, 8), np.random.default_rng(0), angle=30)
    b = perlin_noise((40, 56), (4, 8), np.random.default_rng(0), angle=30)
    assert a.shape == (40, 56) and a.dtype == np.float32 and np.array_equal(a, b)
    assert np.abs(a).max() <= 1.0 + 1e-5 and a.std() > 0.05


def test_perlin_masks_nonempty_inside_target_and_area_bounds():
    _, inside = disk_image()
    target = inside.astype(np.float32)
    sampler = PerlinMask(min_area=0.02, max_area=0.3)
    areas = []
    for seed in range(40):
        m = sampler(target, np.random.default_rng(seed))
        assert m.dtype == np.float32 and set(np.unique(m)) <= {0.0, 1.0}
        assert m.sum() > 0
        assert np.all(m[~inside] == 0)
        areas.append(m.sum() / inside.sum())
    areas = np.array(areas)
    assert areas.min() >= 0.02 and areas.max() <= 0.3
    assert len(np.unique(np.round(areas, 3))) > 10  # a distribution, not a constant


def test_perlin_mask_bounds_hold_even_when_rejection_fails():
    target = np.ones((32, 32), np.float32)
    m = PerlinMask(min_area=0.8, max_area=0.9, max_tries=2)(target, np.random.default_rng(0))
    assert 0.8 <= m.mean() <= 0.9


@pytest.mark.parametrize("kind", ["circle", "rectangle", "polygon"])
def test_shape_masks_inside_target(kind):
    _, inside = disk_image()
    for seed in range(10):
        m = ShapeMask(kind)(inside.astype(np.float32), np.random.default_rng(seed))
        assert m.sum() > 0 and np.all(m[~inside] == 0)


def test_foreground_mask_finds_object_and_treats_texture_as_whole_image():
    img, inside = disk_image(seed=1)
    fg = foreground_mask(img)
    iou = (fg & inside).sum() / (fg | inside).sum()
    assert iou > 0.9
    texture = np.random.default_rng(0).integers(0, 256, (S, S, 3), dtype=np.uint8)
    assert foreground_mask(texture).all()
    prior = estimate_foreground([disk_image(seed=s)[0] for s in range(3)])
    assert (prior & inside).sum() / (prior | inside).sum() > 0.9


def test_target_area_with_prn_shapes_stays_in_foreground():
    img, inside = disk_image()
    ta = TargetArea(foreground="auto", shapes=("circle", "rectangle", "polygon"))
    fg = foreground_mask(img)
    for seed in range(8):
        t = ta(img, np.random.default_rng(seed))
        assert t.sum() > 0 and np.all(t[~fg] == 0) and t.sum() < fg.sum()


# -- generators ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_generators_masks_inside_target_and_image_unchanged_outside(kind, textures, defects):
    img, inside = disk_image()
    gen = all_generators(textures, defects, foreground=inside)[kind]
    for seed in range(4):
        r = gen(img, np.random.default_rng(seed))
        assert isinstance(r, SynthResult)
        assert r.image.dtype == np.uint8 and r.image.shape == img.shape
        assert r.mask.dtype == np.float32 and r.mask.shape == img.shape[:2]
        assert r.mask.sum() > 0, "empty mask"
        assert np.all(r.mask[~inside] == 0), "mask leaves the target area"
        assert np.array_equal(r.image[r.mask == 0], img[r.mask == 0])
        if kind in ("dtd", "hoa", "sdas"):  # default Perlin bounds: 0.5 % .. 50 % of the target area
            assert 0.005 <= r.mask.sum() / inside.sum() <= 0.5


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_output(kind, textures, defects):
    img, _ = disk_image()
    gen = all_generators(textures, defects, foreground="auto")[kind]
    a, b = gen(img, np.random.default_rng(7)), gen(img, np.random.default_rng(7))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    others = [gen(img, np.random.default_rng(s)) for s in (8, 9)]
    assert any(not np.array_equal(a.mask, o.mask) or not np.array_equal(a.image, o.image) for o in others)


def test_poisson_option_and_geometric_masks(textures):
    img, inside = disk_image()
    for mask in ("circle", "rectangle", "polygon"):
        gen = make_generator("dtd", textures=textures, mask=mask, blend="poisson", opacity=1.0, foreground=inside)
        r = gen(img, np.random.default_rng(0))
        assert r.mask.sum() > 0 and np.all(r.mask[~inside] == 0)
        assert np.array_equal(r.image[r.mask == 0], img[r.mask == 0])


def test_ea_keeps_the_defect_pixels(defects):
    img, _ = disk_image(seed=3)
    d_img, d_mask = defects[0]
    target = np.zeros((S, S), bool)
    target[16:48, 16:48] = True
    ea = ExtendedAnomaly(
        defects, target=target, opacity=1.0, color_ops=0, rotate=(0, 0), shear=(0, 0), scale=(1, 1), min_overlap=1.0
    )
    for seed in range(5):
        r = ea(img, np.random.default_rng(seed))
        m = r.mask > 0
        assert m.sum() == d_mask.sum()  # the whole defect, nothing else
        # same pixels in the same arrangement (a pure translation keeps raster order)
        assert np.array_equal(r.image[m], d_img[d_mask])
        ys, xs = np.nonzero(m)
        dy, dx = np.nonzero(d_mask)
        assert len(set(ys - dy)) == 1 and len(set(xs - dx)) == 1


def test_ea_with_augmentation_overlaps_target(defects):
    img, inside = disk_image()
    ea = make_generator("ea", defects=defects, foreground=inside, target_shapes=("circle", "rectangle", "polygon"))
    for seed in range(6):
        r = ea(img, np.random.default_rng(seed))
        assert r.mask.sum() > 0 and np.all(r.mask[~inside] == 0)


def test_hoa_source_is_a_permutation_of_augmented_tiles():
    img, _ = disk_image(seed=4)
    src, augmented, perm = HOASource(grid=8, color_ops=2).sample(img, np.random.default_rng(0))
    assert sorted(perm) == list(range(64)) and not np.array_equal(perm, np.arange(64))
    t = S // 8
    tiles = lambda x: [x[i * t : (i + 1) * t, j * t : (j + 1) * t] for i in range(8) for j in range(8)]  # noqa: E731
    a, s = tiles(augmented), tiles(src)
    for k in range(64):
        assert np.array_equal(s[k], a[perm[k]])
    # without colour operations the augmented image is the input itself
    _, same, _ = HOASource(grid=8, color_ops=0).sample(img, np.random.default_rng(0))
    assert np.array_equal(same, img)


def test_shuffle_tiles_keeps_remainder_strip():
    img = np.random.default_rng(0).integers(0, 256, (35, 43, 3), dtype=np.uint8)
    out, perm = shuffle_tiles(img, 8, np.random.default_rng(1))
    assert np.array_equal(out[32:], img[32:]) and np.array_equal(out[:, 40:], img[:, 40:])
    assert sorted(map(bytes, out[:32, :40].reshape(-1, 3))) == sorted(map(bytes, img[:32, :40].reshape(-1, 3)))


def test_color_ops_and_affine_identity():
    img = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    for op in COLOR_OPS:
        out = apply_color_op(img, op, np.random.default_rng(0))
        assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(color_augment(img, np.random.default_rng(0), 0), img)
    mask = np.ones((20, 24), bool)
    p, m = affine_patch(img, mask, np.random.default_rng(0), (0, 0), (0, 0), (1, 1))
    assert np.array_equal(p, img) and np.array_equal(m, mask)
    p, m = affine_patch(img, mask, np.random.default_rng(0), (45, 45), (0, 0), (1, 1))
    assert m.shape[0] > 20 and abs(int(m.sum()) - 480) < 60  # rotated, area kept


def test_cutpaste_area_bounds():
    img, _ = disk_image()
    gen = CutPaste("patch", area=(0.02, 0.15))
    for seed in range(10):
        r = gen(img, np.random.default_rng(seed))
        assert 0 < r.mask.mean() <= 0.15 + 1e-9
    scar = make_generator("cutpaste_scar")
    assert all(0 < scar(img, np.random.default_rng(s)).mask.mean() < 0.05 for s in range(5))


def test_registry_validation_and_choice(textures):
    with pytest.raises(ValueError):
        make_generator("nope")
    with pytest.raises(ValueError):
        make_generator("cutpaste", mask="circle")
    with pytest.raises(ValueError):
        make_generator("dtd")
    with pytest.raises(ValueError):
        make_generator("hoa", opacity=(0.9, 0.1))
    img, _ = disk_image()
    mix = make_generator(["hoa", "dtd"], textures=textures)
    r = mix(img, np.random.default_rng(0))
    assert r.mask.sum() > 0
    assert make_generator("hea", textures=textures)(img, np.random.default_rng(0)).mask.sum() > 0


# -- feature noise, preview -----------------------------------------------------------------


def test_feature_noise():
    x = torch.zeros(200, 300)
    y = add_feature_noise(x, sigma=0.015, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and abs(float(y.std()) - 0.015) < 0.001 and abs(float(y.mean())) < 0.001
    z = add_feature_noise(x, sigma=0.015, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, z)
    assert torch.equal(add_feature_noise(x + 1, sigma=0.0), x + 1)


def test_preview_grid_layout():
    img, _ = disk_image()
    gen = make_generator("hoa")
    results = [gen(img, np.random.default_rng(s)) for s in range(3)]
    grid = preview_grid([img] * 3, None, results, cell=32, pad=2)
    assert grid.size == (3 * 32 + 4 * 2, 4 * 32 + 5 * 2)


# -- SDAS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sdas():
    from defectkit.synth.sdas import SDASModel, UNetConfig, train_model

    torch.manual_seed(0)
    cfg = UNetConfig(base_channels=8, channel_mults=(1, 2), image_size=16, attention_resolutions=(8,))
    data = torch.rand(6, 3, 16, 16) * 2 - 1
    model = SDASModel.create(cfg, num_timesteps=100, seed=0)
    return train_model(model, data, max_steps=8, batch_size=4, progress=False)


def test_sdas_diffusion_schedule_and_losses():
    from defectkit.synth.sdas import GaussianDiffusion, UNet, UNetConfig, beta_schedule

    for name in ("cosine", "linear"):
        b = beta_schedule(name, 1000)
        assert b.shape == (1000,) and (b > 0).all() and (b < 1).all()
    base = GaussianDiffusion.create("cosine", 1000)
    resp = GaussianDiffusion.create("cosine", 1000, sampling_steps=20)
    assert resp.num_timesteps == 20 and resp.timestep_map[0] == 0 and resp.timestep_map[-1] == 999
    np.testing.assert_allclose(resp.alphas_cumprod, base.alphas_cumprod[resp.timestep_map])
    net = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), image_size=16, attention_resolutions=()))
    x0 = torch.rand(4, 3, 16, 16) * 2 - 1
    t = torch.tensor([0, 1, 500, 999])
    terms = base.training_losses(net, x0, t, torch.randn_like(x0))
    assert torch.isfinite(terms["loss"]).all() and terms["loss"].shape == (4,)
    # learned variance stays between beta~_t and beta_t
    mean, log_var, _ = base.p_mean_variance(net, x0, torch.tensor([5, 5, 5, 5]))
    lo, hi = base.posterior_log_variance_clipped[5], np.log(base.betas[5])
    assert (log_var >= lo - 1e-5).all() and (log_var <= hi + 1e-5).all()


def test_sdas_training_is_finite(tiny_sdas):
    assert tiny_sdas.info["steps"] == 8 and np.isfinite(tiny_sdas.info["final_loss"])


def test_sdas_save_load_roundtrip_and_strength(tiny_sdas, tmp_path):
    from defectkit.synth.sdas import SDASModel

    path = tmp_path / "sdas.pt"
    h = tiny_sdas.save(path)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temp file
    loaded = SDASModel.load(path)
    assert loaded.weights_hash() == h
    a = tiny_sdas.sample(3, strength=0.2, seed=1, steps=5)
    b = loaded.sample(3, strength=0.2, seed=1, steps=5)
    assert a.shape == (3, 16, 16, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    s0 = loaded.sample(3, strength=0.0, seed=1, steps=5)
    assert not np.array_equal(s0, b)
    rng_s = loaded.sample(3, strength=(0.1, 0.2), seed=1, steps=5)
    assert rng_s.shape == (3, 16, 16, 3)


def test_sdas_format_version_is_checked(tiny_sdas, tmp_path):
    from defectkit.synth.sdas import SDASModel

    state = tiny_sdas.state()
    state["version"] = 999
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="version"):
        SDASModel.load(tmp_path / "bad.pt")


def test_sdas_sample_pool_caches_on_disk(tiny_sdas, tmp_path):
    from defectkit.synth.sdas import SamplePool

    pool = SamplePool(tmp_path, tiny_sdas, steps=4).ensure(5, batch_size=3)
    assert len(pool) == 5 and pool[0].shape == (16, 16, 3)
    assert all(0.1 <= e["strength"] <= 0.2 for e in pool.entries)
    assert tiny_sdas.weights_hash() in (pool.dir / "index.json").read_text()
    again = SamplePool(tmp_path, tiny_sdas, steps=4)
    assert len(again) == 5 and all(np.array_equal(again[i], pool[i]) for i in range(5))
    gen = make_generator("sdas", pool=again, foreground=None)
    img, _ = disk_image()
    r = gen(img, np.random.default_rng(0))
    assert r.mask.sum() > 0 and r.image.shape == img.shape


# -- CLI ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_category(tmp_path_factory):
    root = tmp_path_factory.mktemp("cat") / "widget"
    (root / "train" / "good").mkdir(parents=True)
    (root / "test" / "crack").mkdir(parents=True)
    (root / "ground_truth" / "crack").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(disk_image(seed=i)[0]).save(root / "train" / "good" / f"{i:03d}.png")
    img, mask = disk_image(seed=9)
    m = np.zeros((S, S), np.uint8)
    m[25:35, 25:40] = 255
    Image.fromarray(img).save(root / "test" / "crack" / "000.png")
    Image.fromarray(m).save(root / "ground_truth" / "crack" / "000_mask.png")
    return root


@pytest.mark.parametrize("kind", ["hoa", "ea", "dtd", "cutpaste", "confetti"])
def test_cli_writes_preview(kind, tiny_category, textures, tmp_path):
    from defectkit.synth.cli import main

    out = tmp_path / "grid.png"
    assert (
        main(
            [
                "--data",
                str(tiny_category),
                "--kind",
                kind,
                "-n",
                "3",
                "--size",
                "64",
                "--cell",
                "32",
                "--out",
                str(out),
                "--textures",
                str(textures),
            ]
        )
        == 0
    )
    with Image.open(out) as im:
        assert im.size == (3 * 32 + 4 * 2, 4 * 32 + 5 * 2)


def test_cli_subcommand_registration():
    import argparse

    from defectkit.synth.cli import add_synth_subcommand, run_synth

    parser = argparse.ArgumentParser()
    add_synth_subcommand(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["synth", "--data", "x", "--kind", "hoa", "-n", "4"])
    assert args.func is run_synth and args.n == 4 and args.size == 256


# -- real data --------------------------------------------------------------------------------


@needs_data
def test_bottle_foreground_and_ea():
    from defectkit.synth.io import find_images, load_image
    from defectkit.synth.sources import seen_defects_from_dir

    img = load_image(find_images(BOTTLE / "train" / "good")[0], 128)
    fg = foreground_mask(img)
    assert fg[64, 64] and not fg[2, 2] and 0.4 < fg.mean() < 0.85
    defects = seen_defects_from_dir(BOTTLE, n=3, size=128)
    assert len(defects) == 3 and all(m.any() for _, m in defects)
    r = make_generator("ea", defects=defects, foreground="auto")(img, np.random.default_rng(0))
    assert r.mask.sum() > 0 and np.all(r.mask[~fg] == 0)


@needs_data
@pytest.mark.realdata
def test_bottle_dtd_textures():
    if not DTD.is_dir():
        pytest.skip(f"DTD subset not found at {DTD}")
    from defectkit.synth.io import find_images, load_image

    img = load_image(find_images(BOTTLE / "train" / "good")[0], 128)
    r = make_generator("dtd", textures=DTD, foreground="auto")(img, np.random.default_rng(0))
    assert r.mask.sum() > 0


SDAS_BOTTLE = Path(__file__).resolve().parents[1] / ".cache" / "sdas" / "bottle_64.pt"


@needs_data
@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(
    not SDAS_BOTTLE.exists(),
    reason="no trained SDAS bottle model (.cache/sdas/bottle_64.pt); train with python -m defectkit.synth.sdas.train",
)
def test_sdas_bottle_strength_moves_samples_away_from_training_set():
    from defectkit.synth.io import find_images, load_image
    from defectkit.synth.sdas import SDASModel
    from defectkit.synth.sdas.evaluate import compare_strengths

    model = SDASModel.load(SDAS_BOTTLE)
    train = np.stack([load_image(p, model.image_size) for p in find_images(BOTTLE / "train" / "good")])
    res = compare_strengths(model, train, n=4, strengths=(0.0, 0.2), seed=0, steps=20)
    assert res[0.2]["distance_mean"] > res[0.0]["distance_mean"]


def test_synthesise_as_uint8_is_the_float_result_exactly():
    from defectkit.synth.batch import synthesise
    from defectkit.synth.generators import CutPaste

    images = torch.rand(3, 3, 48, 48)
    floats, masks = synthesise(images, [0, 2, 1, 2], CutPaste(), seed=5)
    small, small_masks = synthesise(images, [0, 2, 1, 2], CutPaste(), seed=5, as_uint8=True)
    assert small.dtype == torch.uint8 and small.shape == floats.shape
    assert torch.equal(small.float() / 255.0, floats)
    assert torch.equal(small_masks, masks)
    assert synthesise(images, [], CutPaste(), seed=5, as_uint8=True)[0].dtype == torch.uint8
