"""RealNet's discriminator options: the per-pixel MLP and the official code's conv decoder
(raw residuals in, BN only ranking), with model files, old files and ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from legacy_files import save_without_params

from defectkit.data import MVTecCategory, make_demo_dataset
from defectkit.export import onnx_export
from defectkit.models import load_model
from defectkit.models.realnet.conv_decoder import ConvDiscriminator
from defectkit.models.realnet.model import RealNet
from defectkit.models.realnet.rrs import Discriminator, ResidualSelector, gather_channels, rrs_indices

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_raw_selector_ranks_on_normalised_residuals_and_returns_raw_ones():
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([100.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # channel 0 is large everywhere
    res = torch.rand(4, 6, 8, 8, generator=g) * scales[None, :, None, None]
    res[:, 3, 2, 2] += 5.0  # a spike, unusual for channel 3 but small beside channel 0's scale
    raw, normalised = ResidualSelector(6, 1, 1, raw=True), ResidualSelector(6, 1, 1)
    for sel in (raw, normalised):
        sel.bn.momentum = None  # running statistics = those of this one batch
        sel.train()
        sel(res)  # running statistics
        sel.eval()
    with torch.no_grad():
        ranked_on = normalised.bn(res)
        idx = rrs_indices(ranked_on, 1, 1)
        assert (idx[:, 0] == 3).all()  # the spike wins once the scales are normalised
        assert (rrs_indices(res, 1, 1)[:, 0] == 0).all()  # on raw residuals channel 0 would
        assert torch.equal(raw(res), gather_channels(res, idx))
        assert torch.equal(normalised(res), gather_channels(ranked_on, idx))
    everything = ResidualSelector(6, 1, 1, select=False, raw=True)
    assert torch.equal(everything(res), res) and everything.out_channels == 6


def test_conv_discriminator_keeps_the_interface_and_sees_its_neighbourhood():
    torch.manual_seed(0)
    conv, mlp = ConvDiscriminator(5).eval(), Discriminator(5).eval()
    x = torch.rand(2, 5, 16, 16)
    with torch.no_grad():
        out = conv(x, 64)
        assert out.shape == mlp(x, 64).shape == (2, 2, 64, 64)
        bumped = x.clone()
        bumped[:, :, 8, 8] += 5.0
        # 4 cells (16 px) away the conv decoder's logits change, the MLP's do not
        assert (conv(bumped, 64) - out)[:, :, 32, 48].abs().max() > 0
        assert (mlp(bumped, 64) - mlp(x, 64))[:, :, 32, 48].abs().max() == 0


@pytest.mark.parametrize("head", [Discriminator, ConvDiscriminator], ids=["mlp", "conv"])
def test_anomaly_logit_is_the_softmax_probability_before_the_squash(head):
    """Scoring takes the logit difference before upsampling; its sigmoid must be the softmax
    of the upsampled 2-logit output that training uses."""
    torch.manual_seed(0)
    net = head(12).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1.0, 1.0)
            m.running_var.uniform_(0.5, 2.0)
    last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.mul_(30.0)  # logits far from 0, so the probabilities vary over the map
    x = torch.randn(3, 12, 16, 16)
    with torch.no_grad():
        softmax = torch.softmax(net(x, 64), dim=1)[:, 1:2]
        squashed = torch.sigmoid(net.anomaly_logit(x, 64))
    assert squashed.shape == (3, 1, 64, 64)
    assert softmax.std() > 0.05  # the check is not between two constant maps
    torch.testing.assert_close(squashed, softmax, atol=1e-6, rtol=0)


def test_head_option_is_checked_and_conv_is_the_default():
    with pytest.raises(ValueError, match="head"):
        RealNet(device="cpu", head="attention").check_params()
    assert RealNet(device="cpu").head == "conv" and RealNet.legacy_params["head"] == "mlp"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("realnet-heads")
    data = MVTecCategory(make_demo_dataset(root / "data", n_train=14, n_test_good=3, n_test_defect=3, size=64))
    kwargs = dict(image_size=64, device="cpu", cache_dir=str(root / "cache"), epochs=2, pool_size=16)
    conv = RealNet(seed=0, head="conv", **kwargs).fit(data, progress=False)
    return data, conv, kwargs, root


def test_conv_head_fits_and_round_trips_through_a_model_file(fitted):
    data, model, _, root = fitted
    assert isinstance(model.discriminator_, ConvDiscriminator) and model.selector_.raw
    assert model.discriminator_.residual[0].block[1].in_channels == 29  # r = round(88 / 3)
    scores, maps = model.predict(data.test)
    assert np.isfinite(scores).all() and maps.shape == (len(data.test), 64, 64)
    assert np.allclose(scores, maps.reshape(len(maps), -1).max(1))
    loaded = load_model(model.save(root / "conv.pt"), device="cpu")
    assert loaded.head == "conv" and loaded.get_params() == model.get_params()
    assert isinstance(loaded.discriminator_, ConvDiscriminator) and loaded.selector_.raw
    b, mb = loaded.predict(data.test)
    assert np.array_equal(scores, b) and np.array_equal(maps, mb)


def test_file_from_before_the_head_option_loads_with_the_mlp(fitted, tmp_path):
    """Older files lack ``head``: they were trained with the per-pixel MLP on normalised residuals."""
    data, _, kwargs, _ = fitted
    old = RealNet(seed=0, head="mlp", **kwargs).fit(data, progress=False)
    loaded = load_model(save_without_params(old, tmp_path / "old.pt", "head"), device="cpu")
    assert loaded.head == "mlp" and isinstance(loaded.discriminator_, Discriminator)
    assert not loaded.selector_.raw
    a, ma = old.predict(data.test)
    b, mb = loaded.predict(data.test)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)


@pytest.mark.slow
def test_conv_head_exports_with_parity(fitted, tmp_path):
    _, model, _, _ = fitted
    result = onnx_export.export_model(model, tmp_path / "m.onnx")
    assert result.parity.holds and result.onnx_path.is_file()
