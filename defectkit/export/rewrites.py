"""Export-only reformulations: the same scoring, written so that ONNX Runtime runs it faster.

A fitted model's scoring is traced as it is written for training, and some of it is
written in an order that is natural in torch but costly in a graph run on a CPU (e.g. a
map upsampled at full width before a 1x1 convolution shrinks it). Each rewrite here
replaces a submodule's class by a subclass with the same parameters whose ``forward``
computes the same function by mathematically identical steps (the docstring of each says
why they are identical); float rounding differs, which the parity check at export bounds.

The rewrites act on deep copies of the model's networks (``graph_form``): the model a
user trains and predicts with is never changed, so ``defectkit speed``'s torch numbers are
those of the model as trained.
"""

from __future__ import annotations

import copy
from typing import Callable, Dict, List, Type

from torch import nn

#: original module class -> the export subclass that replaces it
Rewrites = Dict[Type[nn.Module], Type[nn.Module]]


def _method_rewrites() -> Dict[str, Callable[[], Rewrites]]:
    """Methods with export forms (``models/<method>/export_forms.py``); the others have none."""
    from ..models.mlff.export_forms import rewrites as mlff
    from ..models.prn.export_forms import rewrites as prn
    from ..models.realnet.export_forms import rewrites as realnet

    return {"prn": prn, "mlff": mlff, "realnet": realnet}


def rewrites_for(method: str) -> Rewrites:
    """The module rewrites of ``method`` (empty when it has none)."""
    found = _method_rewrites().get(method)
    return {} if found is None else found()


def rewrite_modules(root: nn.Module, rewrites: Rewrites) -> List[str]:
    """Swap, in place, the class of every submodule of ``root`` that ``rewrites`` names (exact
    class match, so an already rewritten module is left alone) -> names of the swapped modules."""
    swapped = []
    for name, module in root.named_modules():
        target = rewrites.get(type(module))
        if target is not None:
            swapped.append(name or type(module).__name__)
            module.__class__ = target
    return swapped


def graph_form(model):
    """A shallow copy of ``model`` whose torch modules are rewritten deep copies (``model`` when
    its method has no rewrites).

    Only attributes that hold ``nn.Module`` s (the method's networks) are copied; tensors
    and settings are shared with ``model``, which stays as it was."""
    rewrites = rewrites_for(model.method)
    if not rewrites:
        return model
    form = copy.copy(model)
    for key, value in vars(model).items():
        if isinstance(value, nn.Module) and key != "backbone_":
            clone = copy.deepcopy(value)
            rewrite_modules(clone, rewrites)
            setattr(form, key, clone)
    return form
