"""RealNet: the estimator in `model`, its parts beside it."""

from .model import RealNet

__all__ = ["RealNet"]
