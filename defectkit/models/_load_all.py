"""Importing this registers every built-in method with the estimator registry.

Each method lives in its own module; a module that is not part of this installation
is skipped, while an error inside a present module is raised as usual.
"""

import importlib
import importlib.util

BUILTIN_METHOD_MODULES = ("patchcore", "simplenet", "realnet", "prn", "mlff")

for _name in BUILTIN_METHOD_MODULES:
    if importlib.util.find_spec(f"{__package__}.{_name}") is not None:
        importlib.import_module(f"{__package__}.{_name}")
