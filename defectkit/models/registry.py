"""Methods by name: the registry that model files, the factory and the CLI look methods up in.

A model file stores the method's name, not a module path, so files survive code moves.
Built-in methods register themselves when their package is imported; importing this
module's lookups imports them all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Dict, List, Type

if TYPE_CHECKING:  # pragma: no cover
    from .base import AnomalyModel

BUILTIN_METHOD_MODULES = ("patchcore", "simplenet", "realnet", "prn", "mlff")

_METHODS: Dict[str, Type["AnomalyModel"]] = {}


def register_method(cls: Type["AnomalyModel"]) -> Type["AnomalyModel"]:
    """Class decorator: make ``cls`` available under ``cls.method``."""
    _METHODS[cls.method] = cls
    return cls


def _load_builtins() -> None:
    for name in BUILTIN_METHOD_MODULES:
        importlib.import_module(f"{__package__}.{name}")


def method_class(name: str) -> Type["AnomalyModel"]:
    """The estimator class registered as ``name`` (KeyError naming the available ones)."""
    _load_builtins()
    if name not in _METHODS:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def available_methods() -> List[str]:
    _load_builtins()
    return sorted(_METHODS)
