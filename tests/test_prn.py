"""PRN: prototypes, MF, MSA tiling, the loss, the seen-anomaly draw, and a tiny end-to-end fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from defectkit.data import MVTecCategory, Sample, make_demo_dataset
from defectkit.data.seen_anomalies import draw_seen_anomalies, seen_file_names, seen_from_folder
from defectkit.models import load_model
from defectkit.models.components.training import FIT_INFO_KEYS
from defectkit.models.prn.attention import (
    MultiSizeSelfAttention,
    PatchAttentionHead,
    from_patches,
    head_grids,
    to_patches,
)
from defectkit.models.prn.decoder import PRNNetwork
from defectkit.models.prn.fusion import MultiScaleFusion
from defectkit.models.prn.losses import focal_loss, prn_loss, top_k_mean
from defectkit.models.prn.model import PRN
from defectkit.models.prn.prototypes import fit_prototypes, kmeans_maps, n_prototypes, nearest_residuals
from defectkit.models.registry import available_methods

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------- prototypes


def test_residual_of_a_prototype_is_zero():
    torch.manual_seed(0)
    maps = torch.randn(20, 3, 4, 4)
    protos, iters = kmeans_maps(maps, 4, seed=0, max_iter=300)
    assert protos.shape == (4, 3, 4, 4) and 1 <= iters <= 300
    res, idx = nearest_residuals(protos, protos)
    assert torch.all(res == 0) and idx.tolist() == [0, 1, 2, 3]
    # any other map: residual is |F - nearest P| and nearest means smallest whole-map L2
    res, idx = nearest_residuals(maps[:5], protos)
    d = ((maps[:5, None] - protos[None]) ** 2).flatten(2).sum(2)
    assert idx.tolist() == d.argmin(1).tolist()
    assert torch.allclose(res, (maps[:5] - protos[idx]).abs())


def test_kmeans_is_seeded_and_k_is_ten_percent():
    maps = torch.randn(30, 2, 3, 3)
    a, _ = kmeans_maps(maps, 3, seed=5)
    b, _ = kmeans_maps(maps, 3, seed=5)
    assert torch.equal(a, b)
    assert n_prototypes(209, 0.1) == 21 and n_prototypes(4, 0.1) == 1
    protos, _ = fit_prototypes({4: torch.randn(20, 2, 8, 8), 8: torch.randn(20, 3, 4, 4)}, 0.1, seed=0)
    assert protos[4].shape == (2, 2, 8, 8) and protos[8].shape == (2, 3, 4, 4)
    # two obvious clusters are found
    maps = torch.cat([torch.zeros(10, 1, 2, 2), torch.full((10, 1, 2, 2), 5.0)]) + 0.01 * torch.randn(20, 1, 2, 2)
    centres, _ = kmeans_maps(maps, 2, seed=1)
    assert sorted(round(float(c.mean())) for c in centres) == [0, 5]


# ---------------------------------------------------------------------------- MF


@pytest.mark.parametrize("size", [64, 56])
def test_mf_paths_and_output_shapes_for_all_r_j(size):
    channels = [4, 6, 8]
    mf = MultiScaleFusion(channels).eval()
    xs = [torch.randn(2, c, size // 2**i, size // 2**i) for i, c in enumerate(channels)]
    for r in range(3):
        for j in range(3):
            if r == j:
                assert f"{r}_{j}" not in mf.paths  # identity
                continue
            path = mf.paths[f"{r}_{j}"]
            if r < j:
                k = 2 ** (j - r)
                assert path.depthwise.stride == (k, k) and path.depthwise.kernel_size == (k + 1, k + 1)
                assert path.depthwise.padding == (k // 2, k // 2) and path.depthwise.groups == channels[r]
                out = path(xs[r])
            else:
                out = path(xs[r], xs[j].shape[-2:])
            assert out.shape == xs[j].shape
    outs = mf(xs)
    assert [o.shape for o in outs] == [x.shape for x in xs]


# ---------------------------------------------------------------------------- MSA


@pytest.mark.parametrize("h,w", [(16, 16), (14, 14), (5, 7)])
def test_msa_heads_tile_the_map_exactly(h, w):
    x = torch.arange(2 * 3 * h * w, dtype=torch.float32).reshape(2, 3, h, w)
    grids = head_grids(h, w)
    assert grids[0] == (1, 1)  # patch size h: one token
    for gh, gw in grids:
        tokens, layout = to_patches(x, gh, gw)
        assert tokens.shape[:2] == (2, gh * gw)
        assert torch.equal(from_patches(tokens, 3, gh, gw, layout), x)  # every pixel back in place once
        if h % gh == 0 and w % gw == 0:  # no padding: the tokens hold each pixel exactly once
            assert tokens.numel() == x.numel()
            assert torch.equal(tokens.flatten().sort().values, x.flatten().sort().values)
    assert head_grids(16, 16) == [(1, 1), (2, 2), (4, 4), (8, 8)]  # patch sizes h, h/2, h/4, h/8


def test_msa_shapes_and_attention_mixes_patches():
    torch.manual_seed(0)
    msa = MultiSizeSelfAttention(6, head_dim=4, depth=3).eval()
    x = torch.randn(2, 6, 16, 16)
    assert msa(x).shape == x.shape
    assert len(msa.layers) == 3 and msa.layers[0].grids == (1, 2, 4, 8)
    head = PatchAttentionHead(6, 4, 4).eval()
    y1 = head(x)
    x2 = x.clone()
    x2[:, :, :4, :4] += 3.0  # change one patch: other patches' outputs change (attention across patches)
    y2 = head(x2)
    assert y1.shape == (2, 4, 16, 16)
    assert not torch.allclose(y1[:, :, 8:, 8:], y2[:, :, 8:, 8:])


@pytest.mark.parametrize(
    "mp,msa,mf", [(False, False, False), (True, False, False), (True, True, False), (True, True, True)]
)
def test_network_ablation_variants(mp, msa, mf):
    net = PRNNetwork([4, 6, 8], use_prototypes=mp, use_msa=msa, use_mf=mf, head_dim=2, decoder_channels=(4, 4, 4))
    xs = [torch.randn(2, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate([4, 6, 8])]
    res = [x.abs() for x in xs] if mp else None
    out = net(xs, res)
    assert out.shape == (2, 1, 32, 32)
    assert (net.attention is not None) == msa and (net.feature_fusion is not None) == mf


# ---------------------------------------------------------------------------- loss and score


def test_focal_and_total_loss():
    logits = torch.tensor([2.0, -1.0, 0.5])
    target = torch.tensor([1.0, 0.0, 0.0])
    p = torch.sigmoid(logits)
    manual = [
        0.5 * (1 - p[0]) ** 4 * -torch.log(p[0]),
        0.5 * p[1] ** 4 * -torch.log(1 - p[1]),
        0.5 * p[2] ** 4 * -torch.log(1 - p[2]),
    ]
    assert focal_loss(logits, target).item() == pytest.approx(float(sum(manual) / 3), rel=1e-5)
    smooth = torch.nn.functional.smooth_l1_loss(p, target)
    assert prn_loss(logits, target).item() == pytest.approx(float(smooth + 5 * sum(manual) / 3), rel=1e-5)
    maps = torch.zeros(2, 1, 20, 20)
    maps[0, 0, :5, :] = 1.0  # 100 ones
    assert top_k_mean(maps, 100).tolist() == [1.0, 0.0]
    assert top_k_mean(maps, 200)[0].item() == pytest.approx(0.5)


# ---------------------------------------------------------------------------- seen anomalies


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("prn")
    return root, MVTecCategory(make_demo_dataset(root / "data", n_train=12, n_test_good=3, n_test_defect=9, size=64))


def test_seen_draw_is_seeded_spread_and_never_leaks(demo):
    _, data = demo
    seen, reduced = draw_seen_anomalies(data, 5, seed=0)
    again, _ = draw_seen_anomalies(data, 5, seed=0)
    assert seen == again
    assert len(seen) == 5 and all(s.label == 1 and s.mask_path is not None for s in seen)
    types = {s.defect_type for s in data.test if s.label == 1}
    counts = [sum(s.defect_type == t for s in seen) for t in types]
    assert max(counts) - min(counts) <= 1  # round-robin over the defect types
    assert not {s.path for s in seen} & {s.path for s in reduced}
    assert len(reduced) + len(seen) == len(data.test)
    assert set(reduced) | set(seen) == set(data.test)
    other = [draw_seen_anomalies(data, 5, seed=k)[0] for k in range(1, 6)]
    assert any(o != seen for o in other)
    assert draw_seen_anomalies(data, 0, seed=0) == ([], list(data.test))
    with pytest.raises(ValueError):
        draw_seen_anomalies(data, 100, seed=0)
    assert all("/" in n for n in seen_file_names(seen))


def test_seen_from_user_folder(tmp_path):
    (tmp_path / "scratch").mkdir()
    img = np.zeros((16, 16, 3), np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 255
    Image.fromarray(img).save(tmp_path / "scratch" / "a.png")
    Image.fromarray(mask).save(tmp_path / "scratch" / "a_mask.png")
    Image.fromarray(img).save(tmp_path / "b.png")
    (tmp_path / "masks").mkdir()
    Image.fromarray(mask).save(tmp_path / "masks" / "b.png")
    samples = seen_from_folder(tmp_path)
    assert [(s.path.name, s.defect_type, s.mask_path.name) for s in samples] == [
        ("b.png", "defect", "b.png"),
        ("a.png", "scratch", "a_mask.png"),
    ]
    Image.fromarray(img).save(tmp_path / "c.png")
    with pytest.raises(ValueError, match="no mask"):
        seen_from_folder(tmp_path)


# ---------------------------------------------------------------------------- end to end


def _tiny(root, **kw):
    params = dict(
        image_size=64,
        device="cpu",
        cache_dir=str(root / "cache"),
        epochs=2,
        pool_size=8,
        train_batch_size=4,
        val_every=1,
        head_dim=2,
        decoder_channels=(8, 8, 8),
        val_anomalies_per_image=1,
        val_fraction=0.25,
        seed=0,
    )
    params.update(kw)
    return PRN(**params)


def test_fit_predict_save_load_and_repeatability(demo, tmp_path):
    root, data = demo
    assert "prn" in available_methods()
    seen, reduced = draw_seen_anomalies(data, 3, seed=0)
    model = _tiny(root).fit(data, progress=False, seen=seen)
    info = model.fit_info_
    assert info["seen_anomalies"] == seen_file_names(seen)
    assert set(FIT_INFO_KEYS) <= set(info)
    assert info["best_epoch"] in (1, 2) and info["batch_counts"] == {"normal": 2, "ea": 1, "sa": 1}
    assert set(info["val_image_names"]) <= {s.path.name for s in data.train}  # validation: training normals only
    scores, maps = model.predict(reduced)
    assert scores.shape == (len(reduced),) and maps.shape == (len(reduced), 64, 64)
    assert np.isfinite(scores).all() and 0 <= maps.min() and maps.max() <= 1
    path = model.save(tmp_path / "prn.pt")
    loaded = load_model(path, device="cpu")
    s2, m2 = loaded.predict(reduced)
    np.testing.assert_allclose(s2, scores, atol=1e-6)
    assert loaded.get_params() == model.get_params()
    again = _tiny(root).fit(data, progress=False, seen=seen)
    np.testing.assert_allclose(again.predict(reduced)[0], scores, atol=1e-6)


def test_fit_without_seen_and_baseline_unet(demo):
    root, data = demo
    model = _tiny(root, epochs=1, use_prototypes=False, use_msa=False, use_mf=False).fit(data, progress=False)
    assert model.fit_info_["seen_anomalies"] == [] and model.fit_info_["batch_counts"]["ea"] == 0
    assert model.prototypes_ == {}
    scores, _ = model.predict(data.test[:2])
    assert scores.shape == (2,)
    with pytest.raises(ValueError):
        PRN(batch_mix=(0, 1, 1)).check_params()
    with pytest.raises(ValueError):
        model.fit(data, progress=False, seen=[Sample("x.png", 0, "good")])
