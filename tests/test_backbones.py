"""Backbones: registry, packaged ImageNet weights mapped correctly, stride contract."""

import numpy as np
import pytest
import torch

from defectkit.backbones import create_backbone, list_backbones
from defectkit.backbones.efficientnet_lite import efficientnet_lite
from defectkit.backbones.resnet import ResNet


def chelsea_batch(size: int) -> torch.Tensor:
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image provides the 'chelsea' test image")
    from PIL import Image

    img = Image.fromarray(skimage_data.chelsea()).resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize(
    "name,size", [("efficientnet_lite0", 224), ("efficientnet_lite1", 240), ("efficientnet_lite2", 260)]
)
def test_packaged_weights_classify_chelsea_as_a_cat(name, size):
    model = efficientnet_lite(name, keep_classifier=True).eval()
    with torch.no_grad():
        top1 = int(model.classify(chelsea_batch(size)).argmax())
    assert 281 <= top1 <= 285, f"{name} top-1 class {top1} is not a cat: weights mapped wrongly"


def test_random_weights_do_not_classify_chelsea_as_a_cat_by_construction():
    """Guards the test above: a scrambled checkpoint must fail it."""
    model = efficientnet_lite("efficientnet_lite0", keep_classifier=True).eval()
    with torch.no_grad():
        for p in model.blocks[3].parameters():
            p.copy_(torch.randn_like(p))
        probs = model.classify(chelsea_batch(224)).softmax(-1)[0]
    assert probs[281:286].sum() < 0.5


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_efficientnet_strides_and_channels(name):
    bb = create_backbone(name)
    out = bb(torch.rand(2, 3, 128, 128), (4, 8, 16))
    for stride, feat in out.items():
        assert feat.shape == (2, bb.stage_channels[stride], 128 // stride, 128 // stride)
    assert not any(p.requires_grad for p in bb.parameters())


def test_resnet_loads_torchvision_format_file(tmp_path):
    reference = ResNet("resnet18")
    state = {k: v for k, v in reference.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 512)  # torchvision files carry the classifier; it is ignored
    torch.save(state, tmp_path / "resnet18.pth")
    bb = create_backbone("resnet18", weights=str(tmp_path / "resnet18.pth"))
    x = torch.rand(1, 3, 64, 64)
    out = bb(x, (4, 8, 16))
    assert {s: tuple(f.shape[1:]) for s, f in out.items()} == {4: (64, 16, 16), 8: (128, 8, 8), 16: (256, 4, 4)}
    with torch.no_grad():
        assert torch.equal(out[16], reference.eval()(x, (16,))[16])


def test_wide_resnet_channels():
    assert ResNet("wide_resnet50_2").stage_channels == {4: 256, 8: 512, 16: 1024}


def test_resnet_without_weights_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="needs a weights file"):
        create_backbone("resnet50")
    with pytest.raises(FileNotFoundError, match="not found"):
        create_backbone("resnet50", weights=str(tmp_path / "missing.pth"))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="does not fit"):
        create_backbone("resnet18", weights=str(tmp_path / "wrong.pth"))


def test_unknown_backbone_lists_available():
    with pytest.raises(KeyError, match="efficientnet_lite0"):
        create_backbone("vgg16")
    assert "wide_resnet50_2" in list_backbones()


def test_unknown_stride_is_rejected():
    with pytest.raises(ValueError, match=r"no stage of stride \[32\]"):
        create_backbone("efficientnet_lite0")(torch.rand(1, 3, 64, 64), (32,))


@pytest.mark.parametrize("size,expected_pad", [(8, (0, 1)), (7, (1, 1))])
def test_same_padding_matches_tensorflow(size, expected_pad):
    """Lite checkpoints come from TensorFlow: stride 2 on even input pads bottom/right only."""
    from torch.nn import functional as F

    from defectkit.backbones.efficientnet_lite import Conv2dSame

    torch.manual_seed(0)
    conv = Conv2dSame(2, 3, 3, stride=2, bias=False)
    x = torch.randn(1, 2, size, size)
    before, after = expected_pad
    reference = F.conv2d(F.pad(x, (before, after, before, after)), conv.weight, stride=2)
    assert torch.allclose(conv(x), reference, atol=1e-6)
    assert conv(x).shape[-1] == -(-size // 2)


def test_cached_features_are_keyed_by_backbone_revision(tmp_path):
    from defectkit.data.preprocess import Preprocess
    from defectkit.features.extractor import FeatureExtractor

    bb = create_backbone("efficientnet_lite0")
    first = FeatureExtractor(bb, Preprocess(64), (8,), "cpu", cache_dir=tmp_path).cache_dir
    bb.revision = bb.revision + 1
    second = FeatureExtractor(bb, Preprocess(64), (8,), "cpu", cache_dir=tmp_path).cache_dir
    assert first != second
