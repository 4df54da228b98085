"""Anomaly detection methods sharing one estimator protocol (see ``base.AnomalyModel``)."""

from .base import AnomalyModel, available_methods, method_class
from .patchcore import PatchCore

__all__ = ["AnomalyModel", "PatchCore", "available_methods", "method_class"]


def load_model(path, device: str = "auto") -> AnomalyModel:
    """Load any defectkit model file."""
    return AnomalyModel.load(path, device=device)
