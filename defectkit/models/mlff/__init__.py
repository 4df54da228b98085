"""MLFF: the estimator in `model`, its parts beside it."""

from .model import MLFF

__all__ = ["MLFF"]
