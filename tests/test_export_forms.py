"""Export forms (defectkit.export.rewrites): rewritten modules compute what the originals do,
and rewriting never touches the model a user trains and predicts with."""

import copy

import torch

from defectkit.export.rewrites import rewrite_modules, rewrites_for
from defectkit.models.prn.decoder import PRNNetwork
from defectkit.models.prn.export_forms import ConvFirstUpFuse
from defectkit.models.prn.fusion import UpFuse


def _randomised(net: torch.nn.Module) -> torch.nn.Module:
    """Eval-mode network with non-trivial BatchNorm statistics (fresh ones are the identity)."""
    gen = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return net.eval()


def test_conv_first_upfuse_equals_upfuse():
    torch.manual_seed(0)
    up = _randomised(UpFuse(12, 5))
    x = torch.randn(3, 12, 4, 6)
    want = up(x, (16, 24))
    rewritten = copy.deepcopy(up)
    assert rewrite_modules(rewritten, rewrites_for("prn")) == ["UpFuse"]
    assert type(rewritten) is ConvFirstUpFuse and type(up) is UpFuse
    got = rewritten(x, (16, 24))
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5, rtol=1e-5)


def test_rewritten_prn_network_scores_like_the_original():
    torch.manual_seed(0)
    net = _randomised(PRNNetwork((6, 8, 10), head_dim=4, msa_depth=1, decoder_channels=(4, 6, 8)))
    feats = [torch.randn(2, c, s, s) for c, s in ((6, 16), (8, 8), (10, 4))]
    res = [f.abs() for f in feats]
    with torch.no_grad():
        want = net(feats, res)
        rewritten = copy.deepcopy(net)
        swapped = rewrite_modules(rewritten, rewrites_for("prn"))
        got = rewritten(feats, res)
    assert len(swapped) == 9  # 3 up-paths in each of the three fusion blocks
    assert all(type(m) is not ConvFirstUpFuse for m in net.modules())
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)


def test_methods_without_rewrites_are_left_as_they_are():
    assert rewrites_for("patchcore") == {} and rewrites_for("simplenet") == {}


def _mlff_net(**kw):
    from defectkit.models.mlff.net import MLFFNet

    torch.manual_seed(0)
    return _randomised(MLFFNet(12, 10, width=8, feature_dim=4, tem_levels=5, ptfem_levels=4, **kw))


def test_rewritten_mlff_network_scores_like_the_original():
    from defectkit.models.mlff.export_forms import FastMLFFNet, FastPTFEM, FastTEM

    net = _mlff_net()
    low, high = torch.randn(2, 12, 16, 16), torch.randn(2, 10, 4, 4)
    with torch.no_grad():
        want = net(low, high)
        rewritten = copy.deepcopy(net)
        swapped = rewrite_modules(rewritten, rewrites_for("mlff"))
        got = rewritten(low, high)
    assert sorted(swapped) == ["MLFFNet", "ptfem", "tem"]
    assert [type(m) for m in (rewritten, rewritten.tem, rewritten.ptfem)] == [FastMLFFNet, FastTEM, FastPTFEM]
    assert all(type(m) not in (FastMLFFNet, FastTEM, FastPTFEM) for m in net.modules())
    for g, w in zip(got, want):
        assert g.shape == w.shape and torch.allclose(g, w, atol=1e-5, rtol=1e-5)


def test_mlff_texture_forms_match_on_grids_the_pyramid_must_resize():
    """Sides that the pyramid's regions do not divide (PTFEM resizes those levels)."""
    net = _mlff_net()
    rewritten = copy.deepcopy(net)
    rewrite_modules(rewritten, rewrites_for("mlff"))
    x = torch.randn(2, 8, 10, 14)
    with torch.no_grad():
        assert torch.allclose(rewritten.ptfem(x), net.ptfem(x), atol=1e-5, rtol=1e-5)
        assert torch.allclose(rewritten.tem(x), net.tem(x), atol=1e-5, rtol=1e-5)


def test_mlff_forms_without_branches_match():
    """The ablation switches (no texture branch, no self-calibration) keep the fusion rewrite exact."""
    for kw in ({"texture": False}, {"scconv": False}, {"texture": False, "scconv": False}):
        net = _mlff_net(**kw)
        rewritten = copy.deepcopy(net)
        rewrite_modules(rewritten, rewrites_for("mlff"))
        low, high = torch.randn(2, 12, 16, 16), torch.randn(2, 10, 8, 8)
        with torch.no_grad():
            for g, w in zip(rewritten(low, high), net(low, high)):
                assert torch.allclose(g, w, atol=1e-5, rtol=1e-5)


def test_conv_of_upsampled_equals_conv_after_upsampling():
    import torch.nn.functional as F

    from defectkit.models.mlff.export_forms import conv3x3_of_upsampled, shifted_upsamplers

    torch.manual_seed(0)
    coarse, weight = torch.randn(2, 3, 5, 7), torch.randn(4, 3, 3, 3)
    size = (20, 21)
    want = F.conv2d(F.interpolate(coarse, size=size, mode="bilinear", align_corners=False), weight, padding=1)
    ops = (shifted_upsamplers(5, 20, coarse), shifted_upsamplers(7, 21, coarse).t())
    assert torch.allclose(conv3x3_of_upsampled(coarse, weight, size, ops), want, atol=1e-5, rtol=1e-5)


def test_blocked_conv_discriminator_scores_like_the_original():
    """RealNet's decoder on zero-padded channels: the same logits and anomaly logits, for a width
    that needs padding (29 -> 32) and one that does not (32)."""
    from defectkit.models.realnet.conv_decoder import ConvDiscriminator
    from defectkit.models.realnet.export_forms import BlockedConvDiscriminator, blocked_width

    for channels in (29, 32):
        torch.manual_seed(channels)
        net = _randomised(ConvDiscriminator(channels))
        x = torch.rand(2, channels, 12, 12)
        with torch.no_grad():
            want = (net(x, 48), net.anomaly_logit(x, 48))
            rewritten = copy.deepcopy(net)
            assert rewrite_modules(rewritten, rewrites_for("realnet")) == ["ConvDiscriminator"]
            got = (rewritten(x, 48), rewritten.anomaly_logit(x, 48))
        assert type(rewritten) is BlockedConvDiscriminator and type(net) is ConvDiscriminator
        assert blocked_width(channels) == 32
        for g, w in zip(got, want):
            assert g.shape == w.shape and torch.allclose(g, w, atol=1e-5, rtol=1e-5)


def test_blocked_width_pads_to_the_next_multiple_of_16():
    from defectkit.models.realnet.export_forms import blocked_width, zero_padded

    assert [blocked_width(c) for c in (1, 16, 17, 29, 48)] == [16, 16, 32, 32, 48]
    w = torch.randn(5, 3, 3, 3)
    padded = zero_padded(w, 2, 4)
    assert padded.shape == (9, 5, 3, 3)
    assert torch.equal(padded[:5, :3], w) and padded[5:].abs().sum() == 0 and padded[:, 3:].abs().sum() == 0
