"""MLFF: QCO counts, texture/SCConv shapes, the three losses by hand, training and model files."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from legacy_files import save_without_params

from defectkit.data import MVTecCategory, make_demo_dataset
from defectkit.models import available_methods, load_model
from defectkit.models.components.training import FIT_INFO_KEYS
from defectkit.models.mlff.losses import (
    ANOMALOUS,
    IGNORED,
    NORMAL,
    cell_labels,
    consistency_loss,
    feature_constraint_loss,
    patch_view,
    pseudo_huber,
    score_constraint_loss,
)
from defectkit.models.mlff.model import MLFF, copy_schedule
from defectkit.models.mlff.net import MLFFNet, split_stages
from defectkit.models.mlff.qco import qco_1d, qco_2d, quantise
from defectkit.models.mlff.scconv import SelfCalibratedConv
from defectkit.models.mlff.texture import PTFEM, TEM, split_regions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------- QCO


def loop_quantise(x: torch.Tensor, n: int):
    """Pixel-by-pixel reference of the soft quantisation (one image, C x H x W)."""
    c, h, w = x.shape
    pixels = [x[:, i, j].double() for i in range(h) for j in range(w)]
    mean = sum(pixels) / len(pixels)
    sims = [float(p @ mean / max(p.norm() * mean.norm(), 1e-6)) for p in pixels]
    lo, hi = min(sims), max(sims)
    step = max((hi - lo) / n, 1e-6)
    levels = [lo + (k + 0.5) * step for k in range(n)]
    enc = np.zeros((n, len(sims)))
    for p, s in enumerate(sims):
        s = min(max(s, levels[0]), levels[-1])
        for k, level in enumerate(levels):
            enc[k, p] = max(0.0, 1.0 - abs(s - level) / step)
    return enc, np.array(levels)


def test_qco_1d_counts_sum_to_pixels_and_match_loop():
    x = torch.randn(2, 5, 6, 7, generator=torch.Generator().manual_seed(0))
    counts, q = qco_1d(x, 8)
    assert counts.shape == (2, 8)
    assert torch.allclose(counts.sum(1), torch.full((2,), 42.0), atol=1e-4)
    assert torch.allclose(q.encoding.sum(1), torch.ones(2, 42), atol=1e-5)  # each pixel weighs 1
    for b in range(2):
        enc, levels = loop_quantise(x[b], 8)
        assert np.allclose(q.levels[b].numpy(), levels, atol=1e-5)
        assert np.allclose(counts[b].numpy(), enc.sum(1), atol=1e-4)


def test_qco_2d_counts_sum_to_pairs_and_match_loop():
    x = torch.randn(1, 4, 5, 6, generator=torch.Generator().manual_seed(1))
    counts, _ = qco_2d(x, 4)
    assert counts.shape == (1, 4, 4)
    assert counts.sum().item() == pytest.approx(5 * 5, abs=1e-4)  # H * (W - 1) horizontal pairs
    enc, _ = loop_quantise(x[0], 4)
    ref = np.zeros((4, 4))
    for i in range(5):
        for j in range(5):
            ref += np.outer(enc[:, i * 6 + j], enc[:, i * 6 + j + 1])
    assert np.allclose(counts[0].numpy(), ref, atol=1e-4)


def test_quantise_hard_cases():
    flat = torch.ones(1, 3, 2, 2)  # every pixel identical: all mass in one level
    counts, _ = qco_1d(flat, 4)
    assert counts[0].tolist() == pytest.approx([4.0, 0.0, 0.0, 0.0])
    # a pixel exactly on a level centre has weight 1 there
    q = quantise(torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(2)), 4)
    assert float(q.encoding.max()) == pytest.approx(1.0)


# ---------------------------------------------------------------------------- modules


def test_modules_keep_the_grid():
    x = torch.randn(2, 8, 8, 8, generator=torch.Generator().manual_seed(3))
    assert TEM(8, n_levels=4, dim=6)(x).shape == x.shape
    assert PTFEM(8, n_levels=3, dim=5)(x).shape == x.shape
    sc = SelfCalibratedConv(8, pooling=4)
    assert sc(x).shape == x.shape
    gate = sc.calibration(x)
    assert float(gate.detach().min()) > 0 and float(gate.detach().max()) < 1
    regions = split_regions(torch.arange(16.0).reshape(1, 1, 4, 4), 2)
    assert regions[1, 0].tolist() == [[2.0, 3.0], [6.0, 7.0]]  # top-right region
    for texture in (True, False):
        for scconv in (True, False):
            net = MLFFNet(10, 12, width=8, feature_dim=4, texture=texture, scconv=scconv, tem_levels=4, ptfem_levels=3)
            phi, s = net(torch.randn(2, 10, 8, 8), torch.randn(2, 12, 4, 4))
            assert phi.shape == (2, 4, 8, 8) and s.shape == (2, 8, 8)


# ---------------------------------------------------------------------------- losses


def test_pseudo_huber_and_feature_constraint_by_hand():
    phi = torch.zeros(1, 2, 2, 1)  # B x D x H x W: pixel 0 = (3, 4), pixel 1 = (0, 1)
    phi[0, :, 0, 0] = torch.tensor([3.0, 4.0])
    phi[0, :, 1, 0] = torch.tensor([0.0, 1.0])
    h = pseudo_huber(phi)
    assert h[0, :, 0].tolist() == pytest.approx([math.sqrt(26) - 1, math.sqrt(2) - 1])
    dist = torch.tensor([[0.5, 1.0, 2.0, 3.0]])
    labels = torch.tensor([[NORMAL, NORMAL, ANOMALOUS, IGNORED]])
    expected = (0.5 + 1.0) / 2 + (-math.log(1 - math.exp(-2.0)))
    assert feature_constraint_loss(dist, labels).item() == pytest.approx(expected, rel=1e-5)
    # no anomalous pixel: only the normal term
    assert feature_constraint_loss(dist[:, :2], labels[:, :2]).item() == pytest.approx(0.75)


def test_score_constraint_by_hand():
    s = torch.tensor([[-0.5, 0.4, 1.0, 2.5, 9.0]])
    labels = torch.tensor([[NORMAL, NORMAL, ANOMALOUS, ANOMALOUS, IGNORED]])
    # normals: max(0, s - 0.1) = 0, 0.3 -> 0.15; normal mean = -0.05
    # anomalies: max(0, 1.5 - (s + 0.05)) = 0.45, 0 -> 0.225
    loss = score_constraint_loss(s, labels, margin_normal=0.1, margin_anomalous=1.5)
    assert loss.item() == pytest.approx(0.15 + 0.225)


def test_consistency_by_hand():
    f = torch.tensor([[[0.0], [1.0], [3.0]]])  # 1 image, 3 patches, 1-D features
    s = torch.tensor([[0.0, 2.0, 2.0]])
    keep = torch.tensor([[True, True, True]])
    fd = np.abs(np.subtract.outer([0.0, 1.0, 3.0], [0.0, 1.0, 3.0]))
    sd = np.abs(np.subtract.outer([0.0, 2.0, 2.0], [0.0, 2.0, 2.0]))
    p = np.exp(-fd) / np.exp(-fd).sum(1, keepdims=True)
    q = np.exp(-sd) / np.exp(-sd).sum(1, keepdims=True)
    expected = np.mean(np.sum(p * np.log(p / q), axis=1))
    assert consistency_loss(f, s, keep).item() == pytest.approx(expected, rel=1e-5)
    # an abnormal patch is left out; identical topologies give 0
    assert consistency_loss(f, f[..., 0], keep).item() == pytest.approx(0.0, abs=1e-6)
    keep2 = torch.tensor([[True, True, False]])
    p2 = np.exp(-fd[:2, :2]) / np.exp(-fd[:2, :2]).sum(1, keepdims=True)
    q2 = np.exp(-sd[:2, :2]) / np.exp(-sd[:2, :2]).sum(1, keepdims=True)
    assert consistency_loss(f, s, keep2).item() == pytest.approx(np.mean(np.sum(p2 * np.log(p2 / q2), 1)), rel=1e-5)
    # gradients are finite although d(i, i) = 0
    ff = f.clone().requires_grad_(True)
    consistency_loss(ff, s, keep).backward()
    assert torch.isfinite(ff.grad).all()


def test_patch_view_and_cell_labels():
    masks = torch.zeros(1, 8, 8)
    masks[0, :4, :4] = 1  # fully covers cell (0, 0) of a 2 x 2 grid
    masks[0, 4, 4] = 1  # 1/16 of cell (1, 1): ignored at threshold 0.25
    labels = cell_labels(masks, (2, 2), 0.25)
    assert labels[0].tolist() == [[ANOMALOUS, NORMAL], [NORMAL, IGNORED]]
    phi = torch.arange(32.0).reshape(1, 2, 4, 4)
    s = torch.ones(1, 4, 4)
    lab = torch.zeros(1, 4, 4, dtype=torch.long)
    lab[0, 0, 0] = ANOMALOUS
    feats, sp, normal = patch_view(phi, s, lab, 2)
    assert feats.shape == (1, 4, 2) and normal[0].tolist() == [False, True, True, True]
    assert feats[0, 0].tolist() == pytest.approx([2.5, 18.5])


def test_copy_schedule():
    normal, anomalous = copy_schedule(7, 10, 0.5, seed=0)
    assert len(normal) == 35 and len(anomalous) == 35
    assert np.bincount(np.r_[normal, anomalous]).tolist() == [10] * 7
    assert len(copy_schedule(7, 10, 0.2, seed=0)[1]) == 14


# ---------------------------------------------------------------------------- estimator


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlff")
    data = MVTecCategory(make_demo_dataset(root / "data", n_train=8, n_test_good=2, n_test_defect=3, size=64))
    kwargs = dict(
        image_size=64,
        device="cpu",
        cache_dir=str(root / "cache"),
        epochs=2,
        repeat=2,
        width=8,
        feature_dim=4,
        tem_levels=4,
        ptfem_levels=3,
        train_batch_size=4,
        val_fraction=0.25,
        val_anomalies_per_image=1,
    )
    model = MLFF(seed=0, **kwargs).fit(data, progress=False)
    return data, model, kwargs, root


def test_registered_and_table4_variants_resolve():
    from defectkit.models.factory import resolve_variants
    from defectkit.models.mlff.model import TABLE4_VARIANTS

    assert "mlff" in available_methods()
    resolved = resolve_variants(list(TABLE4_VARIANTS.values()), None)
    assert len(resolved) == 5


def test_fit_predict_and_fit_info(demo):
    data, model, _, _ = demo
    scores, maps = model.predict(data.test)
    assert scores.shape == (5,) and maps.shape == (5, 64, 64)
    assert np.allclose(scores, maps.reshape(5, -1).max(1))  # image score = max of the map
    info = model.fit_info_
    assert info["pseudo_anomalies"] == 6 and info["train_items_per_epoch"] == 12
    assert set(FIT_INFO_KEYS) <= set(info)
    assert 1 <= info["best_epoch"] <= 2 and info["selection"] == "best validation score"
    assert info["map_source"] == "score"


def test_save_load_round_trip(demo, tmp_path):
    data, model, _, _ = demo
    path = model.save(tmp_path / "m.pt")
    loaded = load_model(path, device="cpu")
    assert type(loaded) is MLFF and loaded.get_params() == model.get_params()
    a, ma = model.predict(data.test)
    b, mb = loaded.predict(data.test)
    assert np.allclose(a, b, atol=1e-6) and np.allclose(ma, mb, atol=1e-6)


def test_same_seed_same_scores_and_baseline_variant(demo):
    data, model, kwargs, root = demo
    again = MLFF(seed=0, **kwargs).fit(data, progress=False)
    assert np.allclose(model.predict(data.test)[0], again.predict(data.test)[0], atol=1e-6)
    baseline = dict(texture=False, scconv=False, score_weight=0.0, consistency_weight=0.0)
    base = MLFF(seed=0, **dict(kwargs, epochs=1, **baseline)).fit(data, progress=False)
    assert base.fit_info_["map_source"] == "distance" and base.net_.tem is None and base.net_.scconv is None
    scores, _ = base.predict(data.test)
    assert np.all(scores >= 0)  # pseudo-Huber distances


def test_finetune_backbone_round_trip(demo, tmp_path):
    data, _, kwargs, _ = demo
    model = MLFF(seed=0, **dict(kwargs, epochs=1, finetune_backbone=True)).fit(data, progress=False)
    assert model.tuned_backbone_ is not None
    loaded = load_model(model.save(tmp_path / "ft.pt"), device="cpu")
    assert np.allclose(model.predict(data.test)[0], loaded.predict(data.test)[0], atol=1e-5)


def test_blur_sigma_smooths_the_bilinear_map(demo):
    from defectkit.features import gaussian_blur

    data, model, _, _ = demo
    _, raw = model.predict(data.test)
    smoothed_model = copy.deepcopy(model)
    smoothed_model.blur_sigma = 2.0  # the same trained net, only the map's post-processing differs
    scores, maps = smoothed_model.predict(data.test)
    expected = gaussian_blur(torch.from_numpy(raw)[:, None], 2.0)[:, 0].numpy()
    assert np.allclose(maps, expected, atol=1e-5)
    assert np.allclose(scores, maps.reshape(len(maps), -1).max(1))
    assert maps.std() < raw.std()  # smoothing lowers the spread of a non-constant map
    with pytest.raises(ValueError, match="blur_sigma"):
        MLFF(blur_sigma=-1.0).check_params()


def test_fresh_anomalies_redraw_defects_but_keep_normals(demo):
    data, _, kwargs, _ = demo
    model = MLFF(seed=0, **{**kwargs, "fresh_anomalies": True})
    model.fit(data, progress=False)  # runs the whole loop with a redraw before epoch 2
    assert model.fit_info_["refresh_seconds"] > 0
    paths = [sample.path for sample in data.train[:6]]
    prepared = model._training_data(paths, progress=False)
    n = prepared["n_normal_images"]
    low, labels = prepared["low"].clone(), prepared["labels"].clone()
    model._refresh_anomalies(prepared, epoch=2, progress=False)
    assert torch.equal(prepared["low"][:n], low[:n]) and torch.equal(prepared["labels"][:n], labels[:n])
    assert not torch.equal(prepared["low"][n:], low[n:])  # new defects, new features
    assert (prepared["labels"][n:] == 1).flatten(1).any(dim=1).float().mean() > 0.5
    again = model._training_data(paths, progress=False)
    model._refresh_anomalies(again, epoch=2, progress=False)
    assert torch.equal(again["low"], prepared["low"])  # the redraw is seeded by (seed, epoch)


def test_cosine_schedule_and_bad_options(demo):
    data, _, kwargs, _ = demo
    model = MLFF(seed=0, **{**kwargs, "lr_schedule": "cosine"}).fit(data, progress=False)
    assert model.fit_info_["epochs_run"] == 2
    with pytest.raises(ValueError, match="lr_schedule"):
        MLFF(lr_schedule="step").check_params()


def test_output_stride_puts_the_head_on_stage_1_or_stage_2_grid(demo):
    data, _, kwargs, _ = demo
    stages = {4: torch.randn(2, 3, 16, 16), 8: torch.randn(2, 5, 8, 8), 16: torch.randn(2, 7, 4, 4)}
    low4, high = split_stages(stages, 4)
    assert low4.shape == (2, 8, 16, 16) and high.shape == (2, 7, 4, 4)
    assert torch.equal(low4[:, :3], stages[4])  # stage 1 untouched, stage 2 upsampled
    assert split_stages(stages, 8)[0].shape == (2, 8, 8, 8)
    with pytest.raises(ValueError, match="output_stride"):
        split_stages(stages, 2)
    with pytest.raises(ValueError, match="output_stride"):
        MLFF(output_stride=16).check_params()
    for stride in (4, 8):  # 4 is the default
        model = MLFF(seed=0, **{**kwargs, "output_stride": stride}).fit(data, progress=False)
        with torch.no_grad():
            low, high = model.stage_inputs(torch.rand(1, 3, 64, 64))
            assert model.grid_maps(low.clone(), high.clone()).shape[-2:] == (64 // stride,) * 2
        scores, maps = model.predict(data.test)
        assert maps.shape == (5, 64, 64) and np.isfinite(scores).all()
    assert MLFF().output_stride == 4


def test_file_from_before_the_output_stride_option_loads_on_the_stride_8_grid(demo, tmp_path):
    """Older files lack ``output_stride``: they were trained on the stride-8 grid and must keep it."""
    data, _, kwargs, _ = demo
    old = MLFF(seed=0, output_stride=8, **kwargs).fit(data, progress=False)
    path = save_without_params(old, tmp_path / "old.pt", "output_stride", "fresh_anomalies", "lr_schedule")
    loaded = load_model(path, device="cpu")
    assert loaded.output_stride == 8 and MLFF().output_stride == 4
    assert np.array_equal(loaded.predict(data.test)[1], old.predict(data.test)[1])
