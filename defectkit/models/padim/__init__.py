"""PaDiM: the estimator in `model`, the streaming per-position Gaussian in `gaussian`."""

from .model import PaDiM

__all__ = ["PaDiM"]
