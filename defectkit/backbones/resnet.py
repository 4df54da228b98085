"""ResNet-18/34/50 and WideResNet-50-2, torchvision-compatible, without importing torchvision.

Parameter names match torchvision's, so a ``resnet18-*.pth`` / ``wide_resnet50_2-*.pth``
file saved by torchvision loads as is. No weights ship with defectkit: the user names the
file (there is no network to download one from).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple, Type, Union

import torch
from torch import nn

from .base import Backbone


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None, width: int = 64):
        super().__init__()
        inner = int(planes * (width / 64.0))
        self.conv1 = nn.Conv2d(cin, inner, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = nn.Conv2d(inner, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


BlockType = Type[Union[BasicBlock, Bottleneck]]

CONFIGS: Dict[str, Tuple[BlockType, List[int], int]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2], 64),
    "resnet34": (BasicBlock, [3, 4, 6, 3], 64),
    "resnet50": (Bottleneck, [3, 4, 6, 3], 64),
    "wide_resnet50_2": (Bottleneck, [3, 4, 6, 3], 128),
}


class ResNet(Backbone):
    """ResNet trunk up to layer3; layer1/2/3 give the stride-4/8/16 features."""

    def __init__(self, name: str):
        super().__init__()
        block, layers, width = CONFIGS[name]
        self.name = name
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.inplanes = 64
        self.layer1 = self._make_layer(block, 64, layers[0], 1, width)
        self.layer2 = self._make_layer(block, 128, layers[1], 2, width)
        self.layer3 = self._make_layer(block, 256, layers[2], 2, width)
        e = block.expansion
        self.stage_channels = {4: 64 * e, 8: 128 * e, 16: 256 * e}

    def _make_layer(self, block: BlockType, planes: int, blocks: int, stride: int, width: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, width)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, None, width) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def extract(self, x: torch.Tensor, strides: Tuple[int, ...]) -> Dict[int, torch.Tensor]:
        out: Dict[int, torch.Tensor] = {}
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stride, layer in ((4, self.layer1), (8, self.layer2), (16, self.layer3)):
            x = layer(x)
            if stride in strides:
                out[stride] = x
            if stride == max(strides):
                break
        return out


def resnet(name: str, weights: Optional[str] = None) -> ResNet:
    """Build ``name``; ``weights`` is a torchvision-format state-dict file (required for real use)."""
    model = ResNet(name)
    if weights is None:
        raise ValueError(
            f"backbone {name!r} needs a weights file: pass weights=PATH (CLI: --weights PATH) pointing to a "
            f"torchvision-format state dict such as {name}-<hash>.pth; defectkit cannot download it"
        )
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file for {name!r} not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"cannot read weights file {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith(("fc.", "layer4."))}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"weights file {path} does not fit {name}: missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"wrong shape {wrong_shape[:3]} (is it a torchvision {name} state dict?)"
        )
    model.load_state_dict(state, strict=True)
    model.weights_id = path.name
    return model
