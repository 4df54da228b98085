"""SimpleNet: the estimator in `model`, its parts beside it."""

from .model import SimpleNet

__all__ = ["SimpleNet"]
