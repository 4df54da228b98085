"""Every trained method's ``val_split``: the shared suite (the default) or the method's own maker,
built by one function; the kept epoch's per-family metrics; files saved without ``val_split``
keep the split they were trained with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from legacy_files import save_without_params
from texture_files import write_textures

from defectkit.data import MVTecCategory, make_demo_dataset
from defectkit.models import load_model
from defectkit.models.components.validation_split import (
    SUITE_SOURCE,
    VAL_SPLITS,
    check_val_split,
    validation_anomalies,
)
from defectkit.models.mlff.model import MLFF
from defectkit.models.prn.model import PRN
from defectkit.models.simplenet.model import SimpleNet
from defectkit.synth.validation import builtin_anomalies, library_anomalies, masked_anomalies
from defectkit.synth.validation_suite import FAMILIES, suite_anomalies

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: per method: the tiny settings of its own tests, and the parameter naming the suite's textures
TINY = {
    "simplenet": (SimpleNet, dict(epochs=2, feature_batch_size=256), "val_textures"),
    "prn": (PRN, dict(epochs=2, pool_size=8, train_batch_size=4, head_dim=2, decoder_channels=(8, 8, 8)), "textures"),
    "mlff": (
        MLFF,
        dict(epochs=2, repeat=2, width=8, feature_dim=4, tem_levels=4, ptfem_levels=3, train_batch_size=4),
        "val_textures",
    ),
}


@pytest.fixture(scope="module")
def textures(tmp_path_factory):
    return write_textures(tmp_path_factory.mktemp("textures"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("val-split")
    data = MVTecCategory(make_demo_dataset(root / "data", n_train=12, n_test_good=2, n_test_defect=3, size=64))
    return data, root


def _tiny(method: str, root, textures, **kw):
    cls, params, texture_param = TINY[method]
    base = dict(image_size=64, device="cpu", cache_dir=str(root / "cache"), seed=0, val_fraction=0.25)
    return cls(**{**base, **params, "val_anomalies_per_image": 1, texture_param: str(textures), **kw})


def _objects(n: int = 3, size: int = 64) -> torch.Tensor:
    """A striped bright disc on a dark background: an object with structure."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.4 * size) ** 2).float()
    base = 0.1 + disc * (0.5 + 0.2 * torch.sin(xx.float() / 2.0))
    return (base[None, None] + 0.03 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)


# ---------------------------------------------------------------------------- the builder


def test_the_suite_split_is_the_suite_with_its_families_and_info(textures):
    images = _objects()

    def own():
        raise AssertionError("the suite split must not call the method's own maker")

    made = validation_anomalies(images, "suite", own, per_image=1, seed=5, textures=textures)
    suite = suite_anomalies(images, 1, seed=5, textures=textures)
    assert torch.equal(made.images, suite.images) and torch.equal(made.masks, suite.masks)
    assert (made.families == suite.families).all() and made.suite == suite.info()
    assert made.source == SUITE_SOURCE and set(made.families) == set(FAMILIES)
    rows = made.row_families(3)
    assert list(rows[:3]) == ["", "", ""] and (rows[3:] == suite.families).all()
    info: dict = {}
    made.record(info)
    assert info == {"val_synthesis": SUITE_SOURCE, "val_suite": suite.info()}


def test_the_own_split_is_the_methods_maker_with_float_masks_read_at_one_half():
    images = _objects(2)
    masks = torch.zeros(2, 64, 64)
    masks[0, :4, :4], masks[1, :4, :4] = 0.7, 0.3
    made = validation_anomalies(images, "own", lambda: (images, masks, "mine"), per_image=1, seed=0)
    assert made.masks.dtype == torch.bool and made.masks[0].sum() == 16 and not made.masks[1].any()
    assert made.families is None and made.row_families(2) is None and made.source == "mine"
    info: dict = {}
    made.record(info)
    assert info == {"val_synthesis": "mine"}


def test_check_val_split_names_what_is_allowed():
    for name in VAL_SPLITS:
        check_val_split(name)
    check_val_split("mixed", aliases=("mixed",))
    with pytest.raises(ValueError, match=r"val_split must be one of \('own', 'suite'\), got 'mixed'"):
        check_val_split("mixed")


# ---------------------------------------------------------------------------- the methods


@pytest.mark.parametrize("cls", [SimpleNet, PRN, MLFF])
def test_suite_is_the_default_old_files_get_own_and_other_names_are_refused(cls):
    assert cls(device="cpu").val_split == "suite" and cls.legacy_params["val_split"] == "own"
    cls(device="cpu", val_split="own").check_params()
    for bad in ("mixed", "test", None):
        with pytest.raises(ValueError, match="val_split"):
            cls(device="cpu", val_split=bad).check_params()


def test_each_methods_own_split_is_its_historical_maker():
    images = _objects()
    simplenet = SimpleNet(device="cpu", image_size=64, val_anomalies_per_image=1, val_split="own", seed=3)
    made = simplenet.validation_anomalies(images)
    ref, ref_masks, source = library_anomalies(images, 1, simplenet.val_kinds, seed=4)
    assert torch.equal(made.images, ref) and torch.equal(made.masks, ref_masks) and made.source == source

    prn = PRN(device="cpu", image_size=64, val_anomalies_per_image=1, val_split="own", seed=3)
    made = prn.validation_anomalies(images)
    ref, ref_masks = builtin_anomalies(images, 1, seed=4)
    assert torch.equal(made.images, ref) and torch.equal(made.masks, ref_masks) and made.source == "builtin"

    mlff = MLFF(device="cpu", image_size=64, val_anomalies_per_image=2, val_split="own", seed=3)
    made = mlff.validation_anomalies(images)
    ref, ref_masks, keep = masked_anomalies(images, 2, ("hoa",), seed=4)
    kept = torch.from_numpy(keep)
    assert torch.equal(made.images, ref[kept]) and torch.equal(made.masks, ref_masks[kept] > 0.5)
    assert made.source == "defectkit.synth:hoa"


@pytest.fixture(scope="module", params=sorted(TINY))
def suite_fit(request, demo, textures):
    data, root = demo
    return data, _tiny(request.param, root, textures, val_split="suite").fit(data, progress=False)


def test_fit_chooses_its_epoch_on_the_suite_and_records_the_families(suite_fit):
    _, model = suite_fit
    info = model.fit_info_
    assert info["val_synthesis"] == SUITE_SOURCE
    assert set(info["val_suite"]["families"]) == set(FAMILIES) == set(info["val_families"])
    # the anomalies the epoch was chosen on are the suite's, all of them
    assert info["val_anomalies"] == sum(info["val_suite"]["families"].values())
    assert all(0.0 <= m["score"] <= 1.0 for m in info["val_families"].values())
    assert "score" in info["val_metrics"] and 1 <= info["best_epoch"] <= 2


def test_suite_model_round_trips_and_a_file_without_val_split_loads_as_own(suite_fit, tmp_path):
    data, model = suite_fit
    loaded = load_model(model.save(tmp_path / "suite.pt"), device="cpu")
    assert loaded.val_split == "suite" and loaded.fit_info_["val_families"] == model.fit_info_["val_families"]
    old = load_model(save_without_params(model, tmp_path / "old.pt", "val_split"), device="cpu")
    assert old.val_split == "own"
    np.testing.assert_array_equal(old.predict(data.test)[1], model.predict(data.test)[1])


@pytest.mark.parametrize("method", sorted(TINY))
def test_own_split_fit_records_no_families_and_its_file_without_val_split_is_unchanged(
    method, demo, textures, tmp_path
):
    data, root = demo
    model = _tiny(method, root, textures, val_split="own").fit(data, progress=False)
    info = model.fit_info_
    assert "val_suite" not in info and "val_families" not in info and info["val_synthesis"] != SUITE_SOURCE
    loaded = load_model(save_without_params(model, tmp_path / "old.pt", "val_split"), device="cpu")
    assert loaded.val_split == "own" and loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.predict(data.test)[1], model.predict(data.test)[1])


def test_mlff_finetune_path_validates_on_its_kept_images_like_the_feature_path(demo, textures):
    """Fine-tuning keeps the validation images (8-bit, as the training images) instead of features;
    scoring them must match scoring their features."""
    data, root = demo
    model = _tiny("mlff", root, textures, val_split="suite", epochs=1, finetune_backbone=True).fit(data, progress=False)
    assert set(model.fit_info_["val_families"]) == set(FAMILIES)
    held_out = [Path(p) for p in model.fit_info_["held_out_files"]]
    kept = model._validation_data(held_out, progress=False)
    model.finetune_backbone = False  # the same tuned backbone, features computed up front
    feats = model._validation_data(held_out, progress=False)
    a, b = model._validate(kept), model._validate(feats)
    assert a["score"] == pytest.approx(b["score"], abs=0.02)
    assert kept["images"].dtype == torch.uint8
    assert model._validate(kept, per_family=True).keys() == model.fit_info_["val_families"].keys()
