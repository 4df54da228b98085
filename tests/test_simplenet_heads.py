"""SimpleNet's discriminator options: deeper MLP (``disc_layers``) and the 3x3 conv head (fit, files, export)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from defectkit.data import MVTecCategory, make_demo_dataset
from defectkit.export import onnx_export
from defectkit.models import load_model
from defectkit.models.simplenet.conv_head import ConvDiscriminator, ConvHead, adapt_maps
from defectkit.models.simplenet.model import SimpleNet
from defectkit.models.simplenet.networks import Adaptor, Discriminator, FusedHead, hidden_layers, init_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trained_bn(disc, inputs):
    disc.train()
    disc(inputs)
    disc.eval()


def test_deeper_discriminator_folds_into_the_head():
    g = torch.Generator().manual_seed(0)
    adaptor, disc = Adaptor(6), Discriminator(6, 5, 0.2, layers=3)
    init_weights(adaptor, g)
    init_weights(disc, g)
    assert len(disc.extra) == 2 and hidden_layers(disc.state_dict()) == 3
    assert hidden_layers(Discriminator(6, 5).state_dict()) == 1
    assert not any(k.startswith("extra") for k in Discriminator(6, 5).state_dict())  # old files load
    _trained_bn(disc, torch.randn(64, 6, generator=g) * 3 + 1)
    mean, scale = torch.randn(6, generator=g), torch.rand(6, generator=g) + 0.5
    feats = torch.randn(2, 6, 3, 4, generator=g)
    vec = feats.permute(0, 2, 3, 1).reshape(-1, 6)
    with torch.no_grad():
        expected = -disc(adaptor((vec - mean) * scale)).reshape(2, 3, 4)
    assert torch.allclose(FusedHead(adaptor, disc, mean, scale)(feats)[:, 0], expected, atol=1e-5)


def test_conv_head_matches_the_modules():
    g = torch.Generator().manual_seed(1)
    adaptor, disc = Adaptor(6), ConvDiscriminator(6, 5, 0.2)
    init_weights(adaptor, g)
    init_weights(disc, g)
    _trained_bn(disc, torch.randn(4, 6, 5, 5, generator=g) * 2)
    mean, scale = torch.randn(6, generator=g), torch.rand(6, generator=g) + 0.5
    feats = torch.randn(2, 6, 5, 7, generator=g)
    with torch.no_grad():
        standardised = (feats.permute(0, 2, 3, 1) - mean) * scale
        expected = -disc(adapt_maps(adaptor, standardised))
    got = ConvHead(adaptor, disc, mean, scale)(feats)
    assert got.shape == (2, 1, 5, 7) and torch.allclose(got[:, 0], expected, atol=1e-5)
    # a location's score depends on its neighbours (the MLP head's would not)
    bumped = feats.clone()
    bumped[:, :, 2, 3] += 5.0
    change = (ConvHead(adaptor, disc, mean, scale)(bumped) - got)[0, 0].abs()
    assert change[1, 2] > 0 and change[0, 0] == 0


def test_options_are_checked():
    with pytest.raises(ValueError):
        SimpleNet(device="cpu", head="attention").check_params()
    with pytest.raises(ValueError):
        SimpleNet(device="cpu", disc_layers=0).check_params()
    with pytest.raises(ValueError):
        SimpleNet(device="cpu", head="conv", disc_layers=2).check_params()
    assert SimpleNet(device="cpu").head == "mlp" and SimpleNet(device="cpu").disc_layers == 1


@pytest.mark.parametrize("params", [{"head": "conv"}, {"disc_layers": 2}])
def test_fit_save_load(tmp_path, params):
    data = MVTecCategory(make_demo_dataset(tmp_path / "data", n_train=14, n_test_good=2, n_test_defect=3, size=64))
    kwargs = dict(image_size=64, device="cpu", cache_dir=str(tmp_path / "cache"), epochs=3, feature_batch_size=128)
    model = SimpleNet(seed=0, **kwargs, **params).fit(data, progress=False)
    assert model.fit_info_["steps_per_epoch"] == (6 if params.get("head") == "conv" else 12 * 64 // 128)
    scores, maps = model.predict(data.test)
    assert np.isfinite(scores).all() and maps.shape == (len(data.test), 64, 64)
    loaded = load_model(model.save(tmp_path / "m.pt"), device="cpu")
    b, mb = loaded.predict(data.test)
    assert np.array_equal(scores, b) and np.array_equal(maps, mb)
    again = SimpleNet(seed=0, **kwargs, **params).fit(data, progress=False)
    assert np.array_equal(again.predict(data.test)[0], scores)


@pytest.mark.slow
def test_conv_head_exports(tmp_path):
    data = MVTecCategory(make_demo_dataset(tmp_path / "data", n_train=8, n_test_good=2, n_test_defect=3, size=64))
    model = SimpleNet(head="conv", image_size=64, device="cpu", use_cache=False, epochs=2, feature_batch_size=128)
    model.fit(data, progress=False)
    assert onnx_export.export_model(model, tmp_path / "m.onnx").parity.holds
