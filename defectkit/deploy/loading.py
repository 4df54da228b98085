"""Open whatever model file the user names as a :class:`~defectkit.deploy.scorer.Scorer`.

A ``.pt`` file is a trained estimator (needs the training install, torch); other
formats are added here by the runtime that reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

from .scorer import Scorer, TorchScorer


def load_scorer(path: Union[str, Path], device: str = "auto", **params) -> Scorer:
    """The scorer for model file ``path``; ``params`` are runtime settings (e.g. ``batch_size``)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        raise ValueError(f"{path}: ONNX models are not supported by this defectkit yet; use the .pt model file")
    from ..models import load_model

    model = load_model(path, device=device)
    if params:
        model.set_params(**params)
    return TorchScorer(model)
