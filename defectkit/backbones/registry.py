"""One registry of backbones by name, the way timm's ``create_model`` works."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

from .base import Backbone

_REGISTRY: Dict[str, Callable[..., Backbone]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    def wrap(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} registered twice")
        _REGISTRY[name] = factory
        return factory

    return wrap


def list_backbones() -> List[str]:
    return sorted(_REGISTRY) + ["timm:<model name> (needs the optional timm extra)"]


def create_backbone(name: str, weights: Optional[str] = None) -> Backbone:
    """Build a frozen backbone by registry name (``timm:<name>`` for any timm model)."""
    if name.startswith("timm:"):
        from .timm_adapter import timm_backbone

        return timm_backbone(name.split(":", 1)[1], weights).frozen()
    if name not in _REGISTRY:
        raise KeyError(f"unknown backbone {name!r}; available: {', '.join(list_backbones())}")
    return _REGISTRY[name](weights=weights).frozen()


def _register_builtins() -> None:
    from .efficientnet_lite import WEIGHT_PACKAGES, efficientnet_lite
    from .resnet import CONFIGS, resnet

    for lite in WEIGHT_PACKAGES:
        register_backbone(lite)(lambda weights=None, _n=lite: efficientnet_lite(_n, weights))
    for res in CONFIGS:
        register_backbone(res)(lambda weights=None, _n=res: resnet(_n, weights))


_register_builtins()
