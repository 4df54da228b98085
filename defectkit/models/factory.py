"""Building a model from a method spec: the one way the CLI and the benchmark make models.

A method spec is a registered name (any case: ``PatchCore`` is ``patchcore``), optionally
with parameters: ``prn[use_msa=False,use_mf=False]``. Before anything runs, parameter
names are checked against the method's constructor, their types against its annotations
(``param_types``) and their values by the method's ``check_params``, so a typo never runs
a whole benchmark with a default silently, nor fails an hour later.
"""

from __future__ import annotations

import ast
import inspect
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .base import BASE_PARAMS, AnomalyModel
from .param_types import check_param_types
from .registry import available_methods, canonical_method, method_class


def parse_value(text: str) -> Any:
    """A parameter value: a Python literal if it parses (``0.05``, ``(8, 16)``), true/false/none
    in any case as True/False/None, otherwise the text itself (``torch``)."""
    text = text.strip()
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _split_top_level(text: str) -> List[str]:
    """Split at commas that are not inside brackets or quotes (``strides=(8,16),k=3`` -> 2 items)."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [t for t in (x.strip() for x in items) if t]


_SPEC = re.compile(r"^\s*([^\[\]\s]+)\s*(?:\[(.*)\])?\s*$", re.DOTALL)


def parse_method_spec(spec: str) -> Tuple[str, Dict[str, Any]]:
    """``"prn[use_msa=False,use_mf=False]"`` -> ``("prn", {"use_msa": False, "use_mf": False})``.

    A plain name has no parameters. Values follow :func:`parse_value`. Only the syntax
    is checked here; :func:`resolve_variants` checks names and keys.
    """
    match = _SPEC.match(spec)
    if not match:
        raise ValueError(f"bad method spec {spec!r}: expected NAME or NAME[key=value,...]")
    name, inner = match.group(1), match.group(2)
    name = _registered_spelling(name)
    params: Dict[str, Any] = {}
    for item in _split_top_level(inner or ""):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"bad method spec {spec!r}: expected key=value, got {item!r}")
        if key in params:
            raise ValueError(f"bad method spec {spec!r}: {key!r} given twice")
        params[key] = parse_value(value)
    return name, params


def _registered_spelling(name: str) -> str:
    """``PatchCore`` -> ``patchcore`` when registered; an unknown name is left for the caller to refuse."""
    try:
        return canonical_method(name)
    except KeyError:
        return name


def canonical_spec(spec: str) -> str:
    """A method spec with its name in the registered spelling: ``PatchCore[k=1]`` -> ``patchcore[k=1]``."""
    spec = spec.strip()
    match = _SPEC.match(spec)
    if not match:
        return spec
    return _registered_spelling(match.group(1)) + spec[match.end(1) :]


def accepts_seen(method: str) -> bool:
    """Whether ``method``'s fit takes seen anomalies (``fit(train, progress, seen=...)``)."""
    return "seen" in inspect.signature(method_class(method).fit).parameters


def supervised_methods() -> List[str]:
    return [m for m in available_methods() if accepts_seen(m)]


def accepted_params(method: str) -> List[str]:
    """Constructor keywords of a method beyond the shared ones (``BASE_PARAMS``)."""
    return [n for n in method_class(method).param_names() if n not in BASE_PARAMS]


def _qualified(key: str) -> str:
    """``PatchCore.coreset_ratio`` -> ``patchcore.coreset_ratio`` (the method part in its registered spelling)."""
    target, dot, name = key.rpartition(".")
    return f"{_registered_spelling(target)}.{name}" if dot else key


def params_for(method: str, method_params: Optional[Mapping[str, Any]], methods: Sequence[str] = ()) -> Dict[str, Any]:
    """The part of ``method_params`` meant for ``method``.

    Keys are constructor keywords (``coreset_ratio``) or method-qualified
    (``patchcore.coreset_ratio``). A plain key goes to every method that accepts it;
    a key that none of ``methods`` accepts is an error naming what they do accept, so
    a typo never runs a whole benchmark with the default silently.
    """
    method = canonical_method(method)
    methods = [canonical_method(m) for m in methods] or [method]
    method_params = {_qualified(k): v for k, v in dict(method_params or {}).items()}
    for key in method_params:
        if key in BASE_PARAMS:
            raise ValueError(
                f"parameter {key!r} has its own option (e.g. --{key.replace('_', '-')}); not a method parameter"
            )
        target, _, name = key.rpartition(".")
        wanted = [target] if target else methods
        if target and target not in methods:
            raise ValueError(
                f"parameter {key!r} is for method {target!r}, which is not being run ({', '.join(methods)})"
            )
        if not any(name in accepted_params(m) for m in wanted):
            known = sorted({p for m in wanted for p in accepted_params(m)})
            raise ValueError(
                f"unknown parameter {name!r} for {', '.join(wanted)}; accepted: {', '.join(known) or 'none'}"
            )
    mine = accepted_params(method)
    out: Dict[str, Any] = {}
    for key, value in method_params.items():
        target, _, name = key.rpartition(".")
        if target and target != method:
            continue
        if name in mine:
            out[name] = value
    return out


def build_model(method: str, method_params: Optional[Mapping[str, Any]] = None, **common: Any) -> AnomalyModel:
    """``method_class(method)(**common, **params)`` with parameter names, types and values checked
    first, so a typo or a bad value fails before any data is read."""
    unknown = sorted(set(common) - set(BASE_PARAMS))
    if unknown:
        raise ValueError(f"not base parameters: {', '.join(unknown)}; pass method parameters in method_params")
    cls = method_class(method)
    params = check_param_types(cls, cls.method, {**common, **params_for(method, method_params)})
    model = cls(**params)
    model.check_params()
    return model


def variant_params(
    spec: str, method_params: Optional[Mapping[str, Any]] = None, methods: Sequence[str] = ()
) -> Tuple[str, Dict[str, Any]]:
    """(method name, constructor params) of one method spec: ``method_params`` meant for it,
    overridden by the spec's own ``[key=value]``. Unknown methods raise KeyError, unknown
    keys ValueError naming the spec."""
    name, own = parse_method_spec(spec)
    name = canonical_method(name)  # KeyError naming the available methods
    params = params_for(name, method_params, list(methods) or [name])
    try:
        params.update(params_for(name, own))
    except ValueError as exc:
        raise ValueError(f"method spec {spec.strip()!r}: {exc}") from None
    return name, params


def resolve_variants(
    specs: Sequence[str], method_params: Optional[Mapping[str, Any]] = None
) -> List[Tuple[str, str, Dict[str, Any]]]:
    """``[(variant, method, params)]`` for method specs, duplicates dropped, all checked first."""
    variants = list(dict.fromkeys(canonical_spec(s) for s in specs))
    names = list(dict.fromkeys(parse_method_spec(v)[0] for v in variants))
    return [(v, *variant_params(v, method_params, names)) for v in variants]


def check_seen_supported(method: str, option: str = "--seen-anomalies") -> None:
    """ValueError unless ``method`` learns from seen anomalies (say which methods do)."""
    if not accepts_seen(method):
        raise ValueError(
            f"method {method} is unsupervised; {option} applies to: "
            f"{', '.join(supervised_methods()) or 'no installed method'}"
        )
