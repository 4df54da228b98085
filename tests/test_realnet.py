"""RealNet: AFS and RRS as pure functions, the U-Net, training on tiny data, model files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from defectkit.data import MVTecCategory, make_demo_dataset
from defectkit.models import available_methods, load_model, method_class
from defectkit.models.components.training import FIT_INFO_KEYS
from defectkit.models.realnet.afs import (
    AFSAccumulator,
    afs_channel_losses,
    keep_counts,
    random_channels,
    select_channels,
)
from defectkit.models.realnet.model import RealNet
from defectkit.models.realnet.rrs import (
    Discriminator,
    ResidualSelector,
    gather_channels,
    rrs_counts,
    rrs_indices,
    stage_residuals,
)
from defectkit.models.realnet.unet import ReconUNet, recon_width

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------- AFS


def _planted_triplets(seed: int, responsive=(2, 5), channels: int = 8, n: int = 6, grid: int = 8, size: int = 32):
    """Normal features, a copy where only ``responsive`` channels change inside the mask while
    the other channels change everywhere (noise unrelated to the defect), and the masks."""
    g = torch.Generator().manual_seed(seed)
    normal = torch.randn(n, channels, grid, grid, generator=g)
    masks = torch.zeros(n, size, size)
    for i in range(n):
        y, x = torch.randint(0, size - 12, (2,), generator=g).tolist()
        masks[i, y : y + 12, x : x + 12] = 1.0
    small = torch.nn.functional.interpolate(masks[:, None], size=(grid, grid), mode="area")
    anomalous = normal + 0.5 * torch.randn(normal.shape, generator=g)  # every channel drifts a little
    for c in responsive:
        anomalous[:, c : c + 1] += 3.0 * small  # these respond to the defect
    return anomalous, normal, masks


def test_afs_picks_the_channels_that_respond_to_a_planted_defect():
    anomalous, normal, masks = _planted_triplets(0)
    losses = afs_channel_losses(anomalous, normal, masks)
    assert losses.shape == (8,)
    assert select_channels(losses, 2).tolist() == [2, 5]
    # accumulated over batches (and strides) it gives the same choice
    acc = AFSAccumulator([4])
    for seed in (1, 2, 3):
        a, i, m = _planted_triplets(seed)
        acc.add({4: a}, {4: i}, m)
    assert select_channels(acc.losses()[4], 2).tolist() == [2, 5]
    # a perfect channel (difference = mask) has a loss near zero
    perfect = normal.clone()
    perfect[:, 0:1] += torch.nn.functional.interpolate(masks[:, None], size=(8, 8), mode="area")
    assert afs_channel_losses(perfect, normal, masks)[0] < 0.01


def test_select_channels_handles_nan_and_ties_deterministically():
    losses = torch.tensor([0.5, float("nan"), 0.1, 0.1, 0.9])
    assert select_channels(losses, 3).tolist() == [0, 2, 3]
    assert select_channels(losses, 10).tolist() == [0, 1, 2, 3, 4]
    a = random_channels(40, 20, torch.Generator().manual_seed(3))
    b = random_channels(40, 20, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and len(set(a.tolist())) == 20 and a.tolist() == sorted(a.tolist())


def test_keep_counts():
    widths = {4: 24, 8: 40, 16: 112}  # EfficientNet-Lite0
    assert keep_counts(widths, (4, 8, 16), 0.5) == {4: 12, 8: 20, 16: 56}
    # the paper's WRN-50 choice {256, 512, 512, 256} of {256, 512, 1024, 2048}, as fractions
    wrn = {4: 256, 8: 512, 16: 1024, 32: 2048}
    assert keep_counts(wrn, (4, 8, 16, 32), "paper") == {4: 256, 8: 512, 16: 512, 32: 256}
    assert keep_counts(widths, (4, 8, 16), "paper") == {4: 24, 8: 40, 16: 56}
    with pytest.raises(ValueError, match="no fraction for strides"):
        keep_counts({2: 16, 4: 24}, (2, 4), "paper")
    with pytest.raises(ValueError, match="afs_keep"):
        keep_counts(widths, (4, 8, 16), "half")
    assert keep_counts(widths, (4, 8, 16), [24, 10, 5]) == {4: 24, 8: 10, 16: 5}
    assert keep_counts(widths, (8, 16), {8: 3, 16: 4}) == {8: 3, 16: 4}
    with pytest.raises(ValueError):
        keep_counts(widths, (4, 8, 16), [25, 10, 5])
    with pytest.raises(ValueError):
        keep_counts(widths, (4, 8, 16), 1.5)


# ---------------------------------------------------------------------------- RRS


def test_rrs_selects_the_expected_channels_per_image():
    r = torch.zeros(2, 6, 4, 4)
    # image 0: channel 3 has the one big spike (top max), channel 1 is high everywhere (top mean)
    r[0, 3, 0, 0] = 10.0
    r[0, 1] = 2.0
    r[0, 4] = 1.0  # second by mean, small max
    # image 1: roles swapped to other channels
    r[1, 0, 2, 2] = 7.0
    r[1, 0, 1, 1] = 6.0
    r[1, 5] = 3.0
    r[1, 2] = 0.9  # mean 0.9 beats channel 0 (13 / 16); a channel may also appear in both halves
    idx = rrs_indices(r, n_max=1, n_mean=2)
    assert idx.tolist() == [[3, 1, 4], [0, 5, 2]]
    picked = gather_channels(r, idx)
    assert picked.shape == (2, 3, 4, 4)
    assert torch.equal(picked[0, 0], r[0, 3]) and torch.equal(picked[1, 1], r[1, 5])
    # r counts: one third of m' = 88 -> 29 -> 14 by max, 15 by mean
    assert rrs_counts(88, 1 / 3) == {"max": 14, "mean": 15}


def test_residual_selector_and_discriminator_shapes():
    feats = {4: torch.randn(2, 3, 8, 8), 8: torch.randn(2, 5, 4, 4)}
    recon = {4: torch.zeros(2, 3, 8, 8), 8: torch.zeros(2, 5, 4, 4)}
    res = stage_residuals(feats, recon)
    assert res.shape == (2, 8, 8, 8)
    assert torch.allclose(res[:, :3], feats[4] ** 2)
    sel = ResidualSelector(8, 2, 2, select=True)
    assert sel(res).shape == (2, 4, 8, 8) and sel.out_channels == 4
    assert not list(sel.parameters())  # BatchNorm without affine parameters
    everything = ResidualSelector(8, 2, 2, select=False)
    assert everything(res).shape == (2, 8, 8, 8) and everything.out_channels == 8
    assert Discriminator(4)(sel(res), 32).shape == (2, 2, 32, 32)


def test_recon_unet_keeps_shape_on_odd_grids():
    net = ReconUNet(5, recon_width(5), (1, 2, 4))
    for hw in ((16, 16), (9, 7)):
        x = torch.randn(2, 5, *hw)
        assert net(x).shape == x.shape
    assert recon_width(256) == 128 and recon_width(12) == 16


# ---------------------------------------------------------------------------- estimator


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("realnet")
    data = MVTecCategory(make_demo_dataset(root / "data", n_train=14, n_test_good=3, n_test_defect=3, size=64))
    kwargs = dict(image_size=64, device="cpu", cache_dir=str(root / "cache"), epochs=2, pool_size=16)
    model = RealNet(seed=0, **kwargs).fit(data, progress=False)
    return data, model, kwargs, root


def test_registered():
    assert "realnet" in available_methods()
    assert method_class("realnet") is RealNet


def test_fit_predict_and_fit_info(demo):
    data, model, _, _ = demo
    scores, maps = model.predict(data.test)
    assert scores.shape == (len(data.test),) and maps.shape == (len(data.test), 64, 64)
    assert np.isfinite(scores).all() and (maps >= 0).all() and (maps <= 1).all()
    assert np.allclose(scores, maps.reshape(len(maps), -1).max(1))  # image score = max of the map
    info = model.fit_info_
    assert info["kept_channels"] == {"4": 12, "8": 20, "16": 56}  # afs_keep=0.5 on Lite0
    assert info["rrs_selected"] == {"max": 14, "mean": 15}  # r = round(88 / 3) = 29
    assert info["val_images"] == 2 and info["train_images"] == 12 and info["pool_size"] == 16
    assert 1 <= info["best_epoch"] <= 2 and len(info["curve"]) == 2 and info["stop_reason"] == "epochs"
    assert set(FIT_INFO_KEYS) <= set(info)
    assert len(info["afs_losses"]["16"]) == 112
    # the kept channels are the ones with the smallest AFS loss
    losses = torch.tensor(info["afs_losses"]["16"])
    kept = info["afs_indices"]["16"]
    dropped = sorted(set(range(112)) - set(kept))
    assert losses[kept].max() <= losses[dropped].min()


def test_save_load_round_trip(demo):
    data, model, _, root = demo
    path = model.save(root / "realnet.pt", overwrite=True)
    loaded = load_model(path, device="cpu")
    assert isinstance(loaded, RealNet)
    assert loaded.get_params() == model.get_params()
    assert {s: v.tolist() for s, v in loaded.channel_indices_.items()} == {
        s: v.tolist() for s, v in model.channel_indices_.items()
    }
    a, ma = model.predict(data.test)
    b, mb = loaded.predict(data.test)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)


def test_same_seed_same_scores_and_ablations(demo):
    data, model, kwargs, _ = demo
    again = RealNet(seed=0, **kwargs).fit(data, progress=False)
    assert np.array_equal(model.predict(data.test)[0], again.predict(data.test)[0])
    ablated = RealNet(seed=0, afs="random", rrs="all", head="mlp", **kwargs).fit(data, progress=False)
    info = ablated.fit_info_
    assert info["afs_mode"] == "random" and info["rrs_selected"] == "all"
    assert info["kept_channels"] == {"4": 12, "8": 20, "16": 56} and "afs_losses" not in info
    assert ablated.discriminator_.mlp[0].in_channels == 88
    assert np.isfinite(ablated.predict(data.test)[0]).all()


def test_clear_errors(demo, tmp_path):
    data, _, kwargs, _ = demo
    with pytest.raises(FileNotFoundError, match="texture"):
        RealNet(textures=str(tmp_path / "missing"), **kwargs).fit(data, progress=False)
    with pytest.raises(FileNotFoundError, match="SDAS"):
        RealNet(synthesis="sdas", sdas_model=str(tmp_path / "none.pt"), **kwargs).fit(data, progress=False)
    with pytest.raises(ValueError):
        RealNet(afs="best").check_params()
    with pytest.raises(ValueError):
        RealNet(rrs="some").check_params()
    with pytest.raises(ValueError, match="blur_sigma"):
        RealNet(blur_sigma=-1.0).check_params()
