"""Parameter values checked against the types a method's constructor declares.

``--param coreset_ratio=abc`` must fail with "parameter coreset_ratio of patchcore must be
a float", not with a traceback from deep inside ``fit``. Every constructor already says
what it takes (``coreset_ratio: float``, ``strides: Tuple[int, ...]``,
``textures: Optional[str]``), so one checker reads those annotations: no table of types
to keep in step with the code. Ranges (``num_neighbours >= 1``) are the method's own
``check_params``.

Accepted: an int where a float is declared; a list where a tuple or sequence is (turned
into a tuple, so ``strides=[8,16]`` equals ``strides=(8,16)``); an ``os.PathLike`` where a
``str`` is (file and folder parameters). A bool is never an int or a float.
"""

from __future__ import annotations

import collections.abc
import inspect
import os
import typing
from typing import Any, Dict, Mapping, Tuple, Type

_NO_VALUE = object()


def constructor_hints(cls: Type) -> Dict[str, Any]:
    """Annotations of the constructor keywords of ``cls`` and its bases (the first wins)."""
    hints: Dict[str, Any] = {}
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None or klass is object:
            continue
        try:
            found = typing.get_type_hints(init)
        except Exception:  # noqa: BLE001 - an unresolvable annotation is simply not checked
            found = {}
        for name in inspect.signature(init).parameters:
            if name in found and name not in hints and name != "return":
                hints[name] = found[name]
    return hints


def _conform(value: Any, hint: Any) -> Tuple[bool, Any]:
    """(does ``value`` fit ``hint``, the value to use)."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True, value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:
        for arg in args:
            ok, converted = _conform(value, arg)
            if ok:
                return True, converted
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return type(value) is bool, value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool), value
    if hint is str:
        return isinstance(value, (str, os.PathLike)), value
    if origin in (tuple, collections.abc.Sequence, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            return False, value
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                return False, value
            items = list(zip(value, args))
        else:
            item_hint = args[0] if args else Any
            items = [(v, item_hint) for v in value]
        out = []
        for v, h in items:
            ok, converted = _conform(v, h)
            if not ok:
                return False, value
            out.append(converted)
        return True, tuple(out)
    if isinstance(hint, type):
        return isinstance(value, hint), value
    return True, value  # an annotation this checker does not model is not checked


_NAMES = {bool: "true or false", int: "an int", float: "a float", str: "a string", type(None): "None"}
_PLURAL = {bool: "booleans", int: "ints", float: "floats", str: "strings"}


def describe(hint: Any) -> str:
    """``Tuple[int, ...]`` -> "a tuple of ints"; ``Optional[str]`` -> "a string or None"."""
    if hint in _NAMES:
        return _NAMES[hint]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:
        parts = [describe(a) for a in args if a is not type(None)]
        if type(None) in args:
            parts.append("None")
        return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else parts[0]
    if origin in (tuple, collections.abc.Sequence, list):
        kind = "tuple" if origin is tuple else "sequence"
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a tuple of {len(args)} " + (_PLURAL.get(args[0], "values") if len(set(args)) == 1 else "values")
        item = args[0] if args else Any
        return f"a {kind} of {_PLURAL.get(item, 'values')}"
    return getattr(hint, "__name__", str(hint))


def _example(name: str, default: Any) -> str:
    """ " (e.g. strides=(8, 16))": the default, written as --param takes it."""
    if default is _NO_VALUE or default is None:
        return ""
    return f" (e.g. {name}={default if isinstance(default, str) else repr(default)})"


def check_param_types(cls: Type, method: str, params: Mapping[str, Any]) -> Dict[str, Any]:
    """``params`` checked against the constructor annotations of ``cls``; lists become tuples
    where a tuple is declared. ValueError naming the parameter, the method, the type and the value."""
    hints = constructor_hints(cls)
    defaults: Dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        init = vars(klass).get("__init__")
        if init is not None and klass is not object:
            for n, p in inspect.signature(init).parameters.items():
                if p.default is not inspect.Parameter.empty:
                    defaults[n] = p.default
    out: Dict[str, Any] = {}
    for name, value in params.items():
        hint = hints.get(name)
        if hint is None:
            out[name] = value
            continue
        ok, converted = _conform(value, hint)
        if not ok:
            raise ValueError(
                f"parameter {name} of {method} must be {describe(hint)}, got {value!r}"
                + _example(name, defaults.get(name, _NO_VALUE))
            )
        out[name] = converted
    return out
