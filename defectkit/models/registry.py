"""Methods by name: the registry that model files, the factory and the CLI look methods up in.

A model file stores the method's name, not a module path, so files survive code moves.
Built-in methods register themselves when their package is imported; importing this
module's lookups imports them all. Names are looked up without regard to case
(``PatchCore`` is ``patchcore``); :func:`canonical_method` gives the registered spelling,
which is what model files and results record.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Dict, List, Type

if TYPE_CHECKING:  # pragma: no cover
    from .base import AnomalyModel

BUILTIN_METHOD_MODULES = ("patchcore", "simplenet", "realnet", "prn", "mlff", "padim")

_METHODS: Dict[str, Type["AnomalyModel"]] = {}


def register_method(cls: Type["AnomalyModel"]) -> Type["AnomalyModel"]:
    """Class decorator: make ``cls`` available under ``cls.method`` (in any case)."""
    _METHODS[cls.method.lower()] = cls
    return cls


def _load_builtins() -> None:
    for name in BUILTIN_METHOD_MODULES:
        importlib.import_module(f"{__package__}.{name}")


def method_class(name: str) -> Type["AnomalyModel"]:
    """The estimator class registered as ``name``, in any case (KeyError naming the available ones)."""
    _load_builtins()
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _METHODS:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(available_methods())}")
    return _METHODS[key]


def canonical_method(name: str) -> str:
    """The registered spelling of method ``name`` (``"PatchCore"`` -> ``"patchcore"``)."""
    return method_class(name).method


def available_methods() -> List[str]:
    _load_builtins()
    return sorted(cls.method for cls in _METHODS.values())
