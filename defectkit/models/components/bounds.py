"""Range checks for ``check_params``: one line per parameter, one message format.

``check_bounds(model, num_neighbours=">= 1", coreset_ratio="(0, 1]")`` raises
``ValueError("num_neighbours must be >= 1, got 0")``. Rules are ``">= x"``, ``"> x"``,
``"<= x"``, ``"< x"`` or an interval ``"(a, b]"`` / ``"[a, b)"`` / ...; a parameter that
is None is skipped (whether None is allowed is the type check's question,
models/param_types.py). Types are checked before this runs, so values are numbers.
"""

from __future__ import annotations

import math
import operator
import re
from typing import Any, Callable, Sequence, Tuple

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,]+),\s*([^\])]+)\s*([\])])\s*$")


def _parse(rule: str) -> Callable[[float], bool]:
    m = _INTERVAL.match(rule)
    if m:
        lo, hi = float(m.group(2)), float(m.group(3))
        lo_ok = operator.ge if m.group(1) == "[" else operator.gt
        hi_ok = operator.le if m.group(4) == "]" else operator.lt
        return lambda v: lo_ok(v, lo) and hi_ok(v, hi)
    for sym in (">=", "<=", ">", "<"):
        if rule.strip().startswith(sym):
            bound = float(rule.strip()[len(sym) :])
            return lambda v, op=_OPS[sym], b=bound: op(v, b)
    raise ValueError(f"bad bound rule {rule!r}")


def check_bounds(model: Any, **rules: str) -> None:
    """ValueError for the first parameter of ``model`` outside its rule (see the module docstring)."""
    for name, rule in rules.items():
        value = getattr(model, name)
        if value is None:
            continue
        v = float(value)
        if math.isnan(v) or not _parse(rule)(v):
            shown = f"in {rule.strip()}" if _INTERVAL.match(rule) else rule.strip()
            raise ValueError(f"{name} must be {shown}, got {value!r}")


def check_choice(model: Any, name: str, allowed: Sequence[Any]) -> None:
    """ValueError unless ``model.<name>`` is one of ``allowed``."""
    value = getattr(model, name)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")


def check_patch_size(patch_size: int, name: str = "patch_size") -> None:
    """An odd neighbourhood size >= 1 (an even one would shift the feature grid by half a cell)."""
    if patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(f"{name} must be an odd int >= 1 (1: no neighbourhood), got {patch_size!r}")


def check_strides(strides: Sequence[int], name: str = "strides") -> Tuple[int, ...]:
    """A non-empty tuple of distinct positive ints (the backbone stages a method reads)."""
    values = tuple(strides)
    if not values or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in values):
        raise ValueError(f"{name} must be a non-empty tuple of positive ints such as (8, 16), got {strides!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} lists a stride twice: {strides!r}")
    return values
