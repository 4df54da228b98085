"""PRN: the estimator in `model`, its parts beside it."""

from .model import PRN

__all__ = ["PRN"]
