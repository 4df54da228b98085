"""The validation-anomaly suite: families in equal parts, seeded, every anomaly a visible change;
per-family scores; RealNet's ``val_split="suite"`` through fit, save and load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from legacy_files import save_without_params
from texture_files import write_textures

from defectkit.data import MVTecCategory, make_demo_dataset
from defectkit.models import load_model
from defectkit.models.components.validation import family_scores, validation_scores
from defectkit.models.realnet.model import RealNet
from defectkit.synth.validation import VISIBLE_CHANGE
from defectkit.synth.validation_suite import FAMILIES, MIN_MEAN_CHANGE, suite_anomalies, visible_mask

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def textures(tmp_path_factory):
    return write_textures(tmp_path_factory.mktemp("textures"))


def _objects(n: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    """A bright textured disc on a dark background: an object with structure, like bottle."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.4 * size) ** 2).float()
    stripes = 0.5 + 0.2 * torch.sin(xx.float() / 2.0)
    base = 0.1 + disc * stripes
    return (base[None, None] + 0.03 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)


def test_same_seed_same_suite_and_another_seed_another(textures):
    images = _objects()
    a = suite_anomalies(images, seed=3, textures=textures, min_per_family=6)
    b = suite_anomalies(images, seed=3, textures=textures, min_per_family=6)
    c = suite_anomalies(images, seed=4, textures=textures, min_per_family=6)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert (a.families == b.families).all() and (a.sources == b.sources).all()
    assert a.images.shape != c.images.shape or not torch.equal(a.images, c.images)


def test_every_family_in_equal_parts_with_visible_non_empty_masks(textures):
    images = _objects()
    suite = suite_anomalies(images, per_image=2, seed=0, textures=textures, min_per_family=6)
    assert set(suite.families) == set(FAMILIES)
    drawn = {f: suite.counts()[f] + suite.skipped[f] for f in FAMILIES}
    assert set(drawn.values()) == {8}  # max(2 x 4 images, 6) draws of every family
    assert sum(suite.skipped.values()) <= 4
    normals = (images * 255).round()
    for img, mask, src in zip(suite.images, suite.masks, suite.sources):
        assert mask.any()
        change = ((img * 255).round() - normals[src]).abs().amax(dim=0) / 255.0
        assert (change[mask] > VISIBLE_CHANGE).all()  # every masked pixel visibly changed
        assert change[mask].mean() >= MIN_MEAN_CHANGE
    info = suite.info()
    assert info["families"] == suite.counts() and info["textures"] == str(textures) and not info["note"]


def test_dropping_a_family_leaves_the_others_unchanged(textures):
    images = _objects()
    full = suite_anomalies(images, seed=1, textures=textures, min_per_family=4)
    some = suite_anomalies(images, seed=1, families=("stain", "scratch"), min_per_family=4)
    keep = np.isin(full.families, ["stain", "scratch"])
    assert torch.equal(full.images[torch.from_numpy(keep)], some.images)


def test_filter_redraws_then_skips_draws_that_change_nothing():
    flat = torch.full((2, 3, 32, 32), 0.5)
    # blurring a flat image changes nothing: every blur draw fails and is counted, stains pass
    suite = suite_anomalies(flat, seed=0, families=("blur", "stain"), min_per_family=3)
    assert suite.skipped == {"blur": 3, "stain": 0} and set(suite.families) == {"stain"}
    with pytest.raises(RuntimeError, match="no visible anomaly"):
        suite_anomalies(flat, seed=0, families=("blur",), min_per_family=3)
    # a minimum mean change no draw can reach: everything is skipped
    with pytest.raises(RuntimeError, match="no visible anomaly"):
        suite_anomalies(_objects(2), seed=0, families=("stain",), min_per_family=2, min_mean_change=1.01)


def test_visible_mask_keeps_only_changed_pixels():
    normal = np.full((4, 4, 3), 100, np.uint8)
    anomalous = normal.copy()
    anomalous[0, 0, 1] = 200  # visible
    anomalous[1, 1] = 105  # below the threshold (5 / 255 < 0.05)
    mask, mean = visible_mask(anomalous, normal, np.ones((4, 4), bool), VISIBLE_CHANGE)
    assert mask.sum() == 1 and mask[0, 0] and mean == pytest.approx(100 / 255)
    mask, mean = visible_mask(anomalous, normal, np.zeros((4, 4), bool), VISIBLE_CHANGE)
    assert not mask.any() and mean == 0.0


def test_without_textures_the_suite_says_so_and_uses_the_other_families(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ../shared/data/dtd_subset from here
    for var in ("DEFECTKIT_TEXTURES", "DEFECTKIT_DTD_DIR"):
        monkeypatch.delenv(var, raising=False)
    with pytest.warns(UserWarning, match="texture"):
        suite = suite_anomalies(_objects(), seed=0, min_per_family=4)
    assert "texture" not in set(suite.families) and set(suite.families) == set(FAMILIES) - {"texture"}
    assert "texture" in suite.note and suite.textures is None


def test_unknown_family_is_an_error():
    with pytest.raises(ValueError, match="families"):
        suite_anomalies(_objects(), families=("rust",))


def test_family_scores_read_each_family_against_all_normals():
    labels = np.array([0, 0, 1, 1, 1, 1])
    families = np.array(["", "", "a", "a", "b", "b"])
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.15, 0.3])
    masks = np.zeros((6, 4, 4), bool)
    masks[2:, 0, 0] = True
    maps = np.zeros((6, 4, 4))
    maps[2:4, 0, 0] = 1.0  # family a is found, family b is not
    out = family_scores(labels, scores, masks, maps, families)
    assert set(out) == {"a", "b"}
    assert out["a"]["image_auroc"] == 1.0 and out["b"]["image_auroc"] == 0.75
    assert out["a"]["pixel_auroc"] == 1.0 and out["b"]["pixel_auroc"] < 1.0
    rows = [0, 1, 2, 3]
    assert out["a"] == validation_scores(labels[rows], scores[rows], masks[rows], maps[rows])


@pytest.fixture(scope="module")
def suite_model(tmp_path_factory, textures):
    root = tmp_path_factory.mktemp("realnet-suite")
    data = MVTecCategory(make_demo_dataset(root / "data", n_train=14, n_test_good=3, n_test_defect=3, size=64))
    kwargs = dict(image_size=64, device="cpu", cache_dir=str(root / "cache"), epochs=2, pool_size=16)
    model = RealNet(seed=0, val_split="suite", textures=str(textures), **kwargs).fit(data, progress=False)
    return data, model, kwargs, root


def test_realnet_chooses_its_epoch_on_the_suite_and_records_families(suite_model):
    _, model, _, _ = suite_model
    info = model.fit_info_
    assert set(info["val_suite"]["families"]) == set(FAMILIES)
    assert set(info["val_families"]) == set(info["val_suite"]["families"])
    assert all(0.0 <= m["score"] <= 1.0 for m in info["val_families"].values())
    assert "score" in info["val_metrics"]


def test_val_split_round_trips_and_is_checked(suite_model, tmp_path):
    data, model, _, _ = suite_model
    loaded = load_model(model.save(tmp_path / "suite.pt"), device="cpu")
    assert loaded.val_split == "suite" and loaded.get_params() == model.get_params()
    a, _ = model.predict(data.test)
    b, _ = loaded.predict(data.test)
    assert np.array_equal(a, b)
    assert RealNet(device="cpu").val_split == "suite" and RealNet.legacy_params["val_split"] == "mixed"
    for name in ("mixed", "own", "suite"):
        RealNet(device="cpu", val_split=name).check_params()
    with pytest.raises(ValueError, match="val_split"):
        RealNet(device="cpu", val_split="test").check_params()


def test_realnet_file_without_val_split_loads_with_the_mixed_split(suite_model, tmp_path):
    data, model, _, _ = suite_model
    loaded = load_model(save_without_params(model, tmp_path / "old.pt", "val_split"), device="cpu")
    assert loaded.val_split == "mixed"
    assert np.array_equal(loaded.predict(data.test)[1], model.predict(data.test)[1])
