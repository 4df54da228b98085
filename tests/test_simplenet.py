"""SimpleNet: the loss, training on tiny data, model files and repeatability."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from legacy_files import save_without_params

from defectkit.data import MVTecCategory, make_demo_dataset
from defectkit.data.splits import split_validation
from defectkit.metrics import image_auroc, pixel_auroc
from defectkit.models import available_methods, load_model, method_class
from defectkit.models.components.training import FIT_INFO_KEYS
from defectkit.models.simplenet.model import SimpleNet
from defectkit.models.simplenet.networks import (
    Adaptor,
    Discriminator,
    FusedHead,
    add_gaussian_noise,
    init_weights,
    truncated_l1_loss,
)
from defectkit.synth.validation import builtin_anomalies as synthetic_validation_anomalies

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------- the loss


def test_truncated_l1_matches_hand_computation():
    d_normal = torch.tensor([1.0, 0.5, 0.2, -0.3])
    d_fake = torch.tensor([-1.0, -0.5, 0.1, 0.7])
    # normal: max(0, 0.5 - d) = 0, 0, 0.3, 0.8 -> mean 0.275
    # fake:   max(0, d + 0.5) = 0, 0, 0.6, 1.2 -> mean 0.45
    loss = truncated_l1_loss(d_normal, d_fake)
    assert loss.item() == pytest.approx(0.275 + 0.45)
    # per-location form of the paper (eq. 7-8): mean of the summed terms
    per_loc = [max(0.0, 0.5 - a) + max(0.0, 0.5 + b) for a, b in zip(d_normal.tolist(), d_fake.tolist())]
    assert loss.item() == pytest.approx(sum(per_loc) / len(per_loc))
    # margins are parameters
    assert truncated_l1_loss(torch.tensor([0.0]), torch.tensor([0.0]), 1.0, -2.0).item() == pytest.approx(1.0 + 2.0)
    # beyond the margins there is no gradient (truncation)
    x = torch.tensor([0.9, 0.1], requires_grad=True)
    y = torch.tensor([-0.9, -0.1], requires_grad=True)
    truncated_l1_loss(x, y).backward()
    assert x.grad.tolist() == pytest.approx([0.0, -0.5])
    assert y.grad.tolist() == pytest.approx([0.0, 0.5])


def test_noise_is_seeded_gaussian():
    q = torch.zeros(20000, 8)
    a = add_gaussian_noise(q, 0.015, torch.Generator().manual_seed(3))
    b = add_gaussian_noise(q, 0.015, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert a.std().item() == pytest.approx(0.015, rel=0.02)
    assert abs(a.mean().item()) < 1e-3


def test_noise_levels_give_each_vector_one_of_k_stds():
    q = torch.zeros(3000, 4000)
    one = add_gaussian_noise(q, 0.015, torch.Generator().manual_seed(3))
    assert torch.equal(add_gaussian_noise(q, 0.015, torch.Generator().manual_seed(3), levels=1), one)
    mixed = add_gaussian_noise(q, 0.015, torch.Generator().manual_seed(3), levels=3)
    row_std = mixed.std(dim=1)
    levels = torch.tensor([0.015 * 1.1**k for k in range(3)])
    nearest = (row_std[:, None] - levels[None]).abs().argmin(dim=1)
    assert torch.allclose(row_std, levels[nearest], rtol=0.05)
    counts = torch.bincount(nearest, minlength=3)
    assert counts.min() > 800  # about 1000 rows per level


def test_noise_levels_per_location_of_maps():
    maps = torch.zeros(2, 3000, 5, 5)
    mixed = add_gaussian_noise(maps, 0.015, torch.Generator().manual_seed(0), levels=2)
    per_location = mixed.std(dim=1).flatten()
    assert {round(v / 0.015, 1) for v in per_location.tolist()} == {1.0, 1.1}


def test_discriminator_architecture_and_fused_head():
    g = torch.Generator().manual_seed(0)
    adaptor, disc = Adaptor(6), Discriminator(6, 5, 0.2)
    init_weights(adaptor, g)
    init_weights(disc, g)
    assert adaptor.fc.bias is None
    assert isinstance(disc.bn, torch.nn.BatchNorm1d) and disc.fc2.bias is None
    # give BN non-trivial running statistics, then compare -D(G((o - m) * s)) with the fused head
    disc.train()
    disc(torch.randn(64, 6, generator=g) * 3 + 1)
    disc.eval()
    mean, scale = torch.randn(6, generator=g), torch.rand(6, generator=g) + 0.5
    feats = torch.randn(2, 6, 3, 4, generator=g)
    vec = feats.permute(0, 2, 3, 1).reshape(-1, 6)
    with torch.no_grad():
        expected = -disc(adaptor((vec - mean) * scale)).reshape(2, 3, 4)
    got = FusedHead(adaptor, disc, mean, scale)(feats)[:, 0]
    assert torch.allclose(got, expected, atol=1e-5)


def test_validation_helpers():
    train, val = split_validation(20, 0.15, seed=0)
    assert len(val) == 3 and len(train) == 17 and not set(train) & set(val)
    assert split_validation(20, 0.15, seed=0)[1].tolist() == val.tolist()
    assert split_validation(3, 0.15, seed=0)[1] is None  # too few images: no validation
    imgs = torch.rand(4, 3, 64, 64)
    a, m = synthetic_validation_anomalies(imgs, per_image=2, seed=1)
    b, _ = synthetic_validation_anomalies(imgs, per_image=2, seed=1)
    assert a.shape == (8, 3, 64, 64) and m.shape == (8, 64, 64) and m.dtype == torch.bool
    assert torch.equal(a, b)
    assert all(m[i].any() for i in range(8))
    change = (a - imgs.repeat(2, 1, 1, 1)).abs().amax(1)
    assert (change[m] > 0.05).all()  # the mask marks visible changes only ...
    assert (change[~m] <= 0.05).all()  # ... and every visible change is in the mask
    assert 0.0 <= a.min() and a.max() <= 1.0


@pytest.mark.parametrize("kinds", [("builtin",), ("hoa", "cutpaste", "cutpaste_scar")])
def test_validation_anomaly_sources(kinds):
    g = torch.Generator().manual_seed(0)
    imgs = torch.nn.functional.interpolate(torch.rand(3, 3, 8, 8, generator=g), size=64, mode="bilinear")
    model = SimpleNet(device="cpu", image_size=64, val_anomalies_per_image=2, val_kinds=kinds, seed=0)
    a, m, source = model._own_anomalies(imgs)
    b, _, _ = model._own_anomalies(imgs)
    assert torch.equal(a, b)  # seeded
    assert source.startswith("builtin" if kinds == ("builtin",) else "defectkit.synth")
    assert a.shape[1:] == (3, 64, 64) and m.shape == (len(a), 64, 64) and m.dtype == torch.bool
    assert all(mk.any() for mk in m)
    assert 0.0 <= a.min() and a.max() <= 1.0


# ---------------------------------------------------------------------------- training


def _manifold_features(n_img: int, seed: int, h: int = 8, w: int = 8, dim: int = 24) -> torch.Tensor:
    """Normal local features on a 4-dimensional linear manifold in ``dim`` dimensions."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(0)))[0][:, :4]
    coords = torch.randn(n_img * h * w, 4, generator=g) * 3.0
    return (coords @ basis.T + 2.0).reshape(n_img, h, w, dim).permute(0, 3, 1, 2).contiguous()


def test_training_lowers_loss_and_separates_defects():
    feats = _manifold_features(32, seed=1)
    model = SimpleNet(device="cpu", image_size=64, epochs=40, feature_batch_size=256, seed=0)
    model.train_on_features(feats)
    losses = [c["loss"] for c in model.fit_info_["curve"]]
    assert losses[-1] < 0.75 * losses[0] and losses[-1] < 0.9  # from ~1.3 (random init) and the ~1.0 plateau
    # defects: the same kind of features pushed off the manifold in some locations
    test = _manifold_features(12, seed=2)
    off = torch.randn(test.shape[1], generator=torch.Generator().manual_seed(5))
    masks = torch.zeros(12, 8, 8, dtype=torch.bool)
    masks[6:, 2:5, 3:6] = True
    test = test + 2.0 * off[None, :, None, None] * masks[:, None]
    with torch.no_grad():
        patch = model.head_(test)[:, 0]
    labels = np.r_[np.zeros(6), np.ones(6)]
    assert image_auroc(labels, patch.flatten(1).amax(1).numpy()) == 1.0
    assert pixel_auroc(masks.numpy(), patch.numpy()) > 0.95
    assert patch[masks].mean() > patch[~masks].mean() + 0.5


def test_validation_picks_the_kept_epoch():
    feats = _manifold_features(24, seed=1)
    vfeats = _manifold_features(8, seed=3)
    masks = torch.zeros(8, 64, 64, dtype=torch.bool)
    masks[4:, 16:40, 24:48] = True
    vfeats[4:, :, 2:5, 3:6] += 2.0
    val = {"feats": vfeats, "labels": np.r_[np.zeros(4), np.ones(4)].astype(int), "masks": masks.numpy()}
    model = SimpleNet(device="cpu", image_size=64, epochs=12, feature_batch_size=256, patience=4, seed=0)
    model.train_on_features(feats, val)
    info = model.fit_info_
    curve = [c for c in info["curve"] if "score" in c]
    best = max(curve, key=lambda c: c["score"])
    assert info["best_epoch"] == best["epoch"] and info["best_score"] == best["score"]
    assert info["selection"] == "best validation score"
    assert info["epochs_run"] <= 12
    assert info["val_metrics"]["score"] == pytest.approx(best["score"])
    # the kept weights reproduce the chosen epoch's validation score
    assert model._validate(dict(val, feats=vfeats))["score"] == pytest.approx(best["score"])


# ---------------------------------------------------------------------------- estimator


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("simplenet")
    data = MVTecCategory(make_demo_dataset(root / "data", n_train=14, n_test_good=3, n_test_defect=3, size=64))
    kwargs = dict(image_size=64, device="cpu", cache_dir=str(root / "cache"), epochs=6, feature_batch_size=256)
    model = SimpleNet(seed=0, **kwargs).fit(data, progress=False)
    return data, model, kwargs, root


def test_registered():
    assert "simplenet" in available_methods()
    assert method_class("simplenet") is SimpleNet


def test_fit_predict_and_fit_info(demo):
    data, model, _, _ = demo
    scores, maps = model.predict(data.test)
    assert scores.shape == (len(data.test),) and maps.shape == (len(data.test), 64, 64)
    assert np.isfinite(scores).all() and np.isfinite(maps).all()
    assert np.allclose(scores, maps.reshape(len(maps), -1).max(1))  # image score = max of the map
    info = model.fit_info_
    assert info["val_images"] == 2 and info["train_images"] == 12
    assert 1 <= info["best_epoch"] <= info["epochs_run"] <= 6
    assert len(info["curve"]) == info["epochs_run"] and all("score" in c for c in info["curve"])
    assert info["stop_reason"] in ("epochs", "patience")
    assert set(FIT_INFO_KEYS) <= set(info)
    params = model.get_params()
    assert params["noise_std"] == 0.015 and params["th_pos"] == 0.5 and params["adaptor_lr"] == 1e-4


def test_save_load_round_trip(demo):
    data, model, _, root = demo
    path = model.save(root / "simplenet.pt", overwrite=True)
    loaded = load_model(path, device="cpu")
    assert isinstance(loaded, SimpleNet)
    assert loaded.get_params() == model.get_params()
    assert loaded.fit_info_["best_epoch"] == model.fit_info_["best_epoch"]
    a, ma = model.predict(data.test)
    b, mb = loaded.predict(data.test)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)


def test_file_from_before_the_aggregation_option_loads_with_the_mean(demo, tmp_path):
    """Older files lack ``aggregation``: they were trained on 3x3-mean features and must keep them."""
    data, _, kwargs, _ = demo
    old = SimpleNet(seed=0, aggregation="mean", **kwargs).fit(data, progress=False)
    loaded = load_model(save_without_params(old, tmp_path / "old.pt", "aggregation", "embed_dim"), device="cpu")
    assert loaded.aggregation == "mean" and SimpleNet().aggregation == "adaptive"
    assert np.array_equal(loaded.predict(data.test)[0], old.predict(data.test)[0])


def test_same_seed_same_scores(demo):
    data, model, kwargs, _ = demo
    again = SimpleNet(seed=0, **kwargs).fit(data, progress=False)  # features come from the cache
    a, ma = model.predict(data.test)
    b, mb = again.predict(data.test)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    other = SimpleNet(seed=1, **kwargs).fit(data, progress=False)
    assert not np.array_equal(a, other.predict(data.test)[0])


def test_paper_defaults():
    m = SimpleNet(device="cpu")
    assert (m.noise_std, m.th_pos, m.th_neg, m.leaky_slope) == (0.015, 0.5, -0.5, 0.2)
    assert (m.adaptor_lr, m.disc_lr, m.weight_decay, m.epochs, m.blur_sigma) == (1e-4, 2e-4, 1e-5, 160, 4.0)
    assert m.strides == (8, 16) and m.patch_size == 3 and m.image_score == "map_max"
    assert (m.feature_std, m.feature_norm, m.disc_hidden, m.feature_batch_size) == (0.03, "global", None, 4096)
    with pytest.raises(ValueError):
        SimpleNet(device="cpu", image_score="mean").check_params()
    with pytest.raises(ValueError):
        SimpleNet(device="cpu", feature_norm="l2").check_params()
