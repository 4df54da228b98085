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
