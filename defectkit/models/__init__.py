"""Anomaly detection methods sharing one estimator protocol (see ``base.AnomalyModel``).

One package per method (``simplenet/``, ``realnet/``, ``prn/``, ``mlff/``; PatchCore is one
module), the parts they share in ``components/``, methods by name in ``registry``, and
``factory.build_model`` for building one from a method spec with checked parameters.
"""

from .base import AnomalyModel
from .patchcore import PatchCore
from .registry import available_methods, method_class, register_method

__all__ = ["AnomalyModel", "PatchCore", "available_methods", "load_model", "method_class", "register_method"]


def load_model(path, device: str = "auto") -> AnomalyModel:
    """Load any defectkit model file."""
    return AnomalyModel.load(path, device=device)
