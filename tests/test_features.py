"""Patch features, smoothing and the on-disk feature cache."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from defectkit.backbones import create_backbone
from defectkit.data.preprocess import Preprocess
from defectkit.features import (
    adaptive_pool_matrix,
    aggregate_neighbourhood,
    embed_neighbourhood,
    fuse_stages,
    gaussian_blur,
)
from defectkit.features.extractor import FeatureExtractor


def test_neighbourhood_average_matches_scipy_inside():
    f = torch.rand(1, 2, 9, 9)
    got = aggregate_neighbourhood(f, 3)[0].numpy()
    ref = ndimage.uniform_filter(f[0].numpy(), size=(1, 3, 3), mode="constant")
    np.testing.assert_allclose(got[:, 1:-1, 1:-1], ref[:, 1:-1, 1:-1], rtol=1e-5, atol=1e-6)
    # corners average only their 4 real neighbours
    np.testing.assert_allclose(got[:, 0, 0], f[0, :, :2, :2].mean(dim=(1, 2)).numpy(), rtol=1e-5)


def test_fuse_stages_grid_and_channels():
    feats = {8: torch.rand(2, 5, 8, 8), 16: torch.rand(2, 7, 4, 4)}
    out = fuse_stages(feats, (8, 16), 3)
    assert out.shape == (2, 12, 8, 8)


@pytest.mark.parametrize("l_in,l_out", [(360, 128), (1008, 128), (100, 256), (7, 3), (5, 5)])
def test_adaptive_pool_matrix_is_torch_adaptive_avg_pool1d(l_in, l_out):
    v = torch.randn(3, l_in, dtype=torch.float64)
    ref = F.adaptive_avg_pool1d(v[:, None], l_out)[:, 0]
    torch.testing.assert_close(v @ adaptive_pool_matrix(l_in, l_out).T, ref)


def test_adaptive_embedding_is_unfold_then_pool_per_location():
    """The official code's f_agg: flatten each zero-padded C x 3 x 3 neighbourhood, pool to d."""
    f = torch.randn(2, 40, 6, 7)
    unfolded = F.unfold(f, 3, padding=1)  # N x (C*9) x L, ordered (channel, row, column)
    per_location = unfolded.transpose(1, 2).reshape(-1, 1, 40 * 9)
    ref = F.adaptive_avg_pool1d(per_location, 128).reshape(2, 6 * 7, 128).transpose(1, 2).reshape(2, 128, 6, 7)
    torch.testing.assert_close(embed_neighbourhood(f, 3, 128), ref, rtol=1e-5, atol=1e-5)
    # a shifted neighbour changes the embedding, unlike the plain 3x3 mean
    g = f.clone()
    g[:, :, 2, 3], g[:, :, 2, 4] = f[:, :, 2, 4], f[:, :, 2, 3]
    assert not torch.allclose(embed_neighbourhood(g, 3, 128)[:, :, 2, 3], embed_neighbourhood(f, 3, 128)[:, :, 2, 3])


def test_fuse_stages_adaptive_widths_and_errors():
    feats = {8: torch.rand(2, 5, 8, 8), 16: torch.rand(2, 7, 4, 4)}
    assert fuse_stages(feats, (8, 16), 3, aggregation="adaptive", embed_dim=16).shape == (2, 32, 8, 8)
    with pytest.raises(ValueError, match="embed_dim"):
        fuse_stages(feats, (8, 16), 3, aggregation="adaptive")
    with pytest.raises(ValueError, match="aggregation"):
        fuse_stages(feats, (8, 16), 3, aggregation="max")


def test_gaussian_blur_matches_scipy():
    x = torch.rand(1, 1, 64, 64)
    got = gaussian_blur(x, 4.0)[0, 0].numpy()
    ref = ndimage.gaussian_filter(x[0, 0].numpy().astype(np.float64), 4.0, mode="mirror", truncate=4.0)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_feature_cache_hits_and_is_keyed_by_content(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    bb = create_backbone("efficientnet_lite0")
    fx = FeatureExtractor(bb, Preprocess(64), (8, 16), torch.device("cpu"), cache_dir=tmp_path / "cache")
    first = fx(paths)
    files = sorted(fx.cache_dir.glob("*.pt"))
    assert len(files) == 3
    second = fx(paths)
    for s in (8, 16):
        assert torch.equal(first[s], second[s])
    # the cache is really read: corrupting an entry's content changes the result
    entry = torch.load(files[0])
    entry[8] = entry[8] + 1
    torch.save(entry, files[0])
    third = fx(paths)
    assert any(not torch.equal(first[8][i], third[8][i]) for i in range(3))
    # editing an image misses the cache instead of returning stale features
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(paths[1])
    fourth = fx(paths)
    assert not torch.equal(fourth[8][1], first[8][1])
    assert len(list(fx.cache_dir.glob("*.pt"))) == 4
    # other preprocessing -> other cache folder
    other = FeatureExtractor(bb, Preprocess(96), (8, 16), torch.device("cpu"), cache_dir=tmp_path / "cache")
    assert other.cache_dir != fx.cache_dir
    uncached = FeatureExtractor(bb, Preprocess(64), (8, 16), torch.device("cpu"), use_cache=False)(paths)
    assert torch.allclose(uncached[16], fourth[16], rtol=1e-4, atol=1e-4)  # batch size may change the conv algorithm


def test_stage_balance_gives_every_stage_equal_weight_in_squared_distance():
    from defectkit.features import fuse_stages, stage_balance_weights

    assert stage_balance_weights([4, 16]) == [2.0, 1.0]
    feats = {8: torch.ones(1, 4, 4, 4), 16: torch.ones(1, 16, 2, 2)}
    fused = fuse_stages(feats, (8, 16), patch_size=1, balance=True)
    narrow, wide = fused[0, :4, 0, 0], fused[0, 4:, 0, 0]
    assert torch.isclose((narrow**2).sum(), (wide**2).sum())
    unbalanced = fuse_stages(feats, (8, 16), patch_size=1)
    assert torch.equal(unbalanced[0, :, 0, 0], torch.ones(20))
