"""utils.resize: the scale-factor form of a bilinear resize computes exactly what the size form
computes, and exports as a Resize with constant scales (ORT's blocked Upsample) only when it may."""

import onnx
import pytest
import torch
import torch.nn.functional as F

from defectkit.export.onnx_export import OPSET
from defectkit.utils.resize import MIN_BLOCKED_CHANNELS, resize_bilinear


def _by_size(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@pytest.mark.parametrize(
    "grid, size",
    [
        ((8, 8), (16, 16)),
        ((8, 8), (32, 32)),
        ((4, 6), (12, 24)),
        ((5, 7), (15, 7)),
        ((8, 8), (20, 20)),
        ((9, 9), (4, 4)),
    ],
)
def test_equals_interpolate_by_size_bit_for_bit(grid, size):
    x = torch.randn(2, MIN_BLOCKED_CHANNELS, *grid, generator=torch.Generator().manual_seed(0))
    got = resize_bilinear(x, size)
    assert got.shape[-2:] == size
    assert torch.equal(got, _by_size(x, size))


def test_same_size_is_the_input():
    x = torch.randn(1, 3, 5, 5)
    assert resize_bilinear(x, (5, 5)) is x


class _Up(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return resize_bilinear(self.conv(x), (4 * x.shape[-2], 4 * x.shape[-1]))


def _resize_nodes(channels, tmp_path):
    """(scales input, sizes input, names of constants) of each Resize, exported as defectkit exports."""
    path = tmp_path / f"up{channels}.onnx"
    torch.onnx.export(_Up(channels).eval(), (torch.randn(1, channels, 4, 4),), path, dynamo=True, opset_version=OPSET)
    graph = onnx.load(path).graph
    consts = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [
        (n.input[2] if len(n.input) > 2 else "", n.input[3] if len(n.input) > 3 else "", consts)
        for n in graph.node
        if n.op_type == "Resize"
    ]


def test_exports_constant_scales_for_channel_rich_maps_and_sizes_for_thin_ones(tmp_path):
    [(scales, sizes, consts)] = _resize_nodes(MIN_BLOCKED_CHANNELS, tmp_path)
    assert scales in consts and sizes == ""
    [(scales, sizes, _)] = _resize_nodes(1, tmp_path)
    assert sizes != ""
