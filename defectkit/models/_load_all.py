"""Importing this registers every built-in method with the estimator registry."""

from . import patchcore  # noqa: F401
from . import simplenet  # noqa: F401
