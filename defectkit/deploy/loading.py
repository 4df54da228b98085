"""Open whatever model file the user names as a :class:`~defectkit.deploy.scorer.Scorer`.

A ``.pt`` file is a trained estimator (needs the training install, torch); an ``.onnx``
file is a model exported by ``defectkit export``, run by ONNX Runtime without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

from .scorer import Scorer, TorchScorer


def load_scorer(path: Union[str, Path], device: str = "auto", **params) -> Scorer:
    """The scorer for model file ``path``; ``params`` are runtime settings (e.g. ``batch_size``;
    for ``.onnx`` also ``threads``, ONNX Runtime's intra-op threads)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return _onnx_scorer(path, device, params)
    try:
        from ..models import load_model
    except ImportError as exc:
        if getattr(exc, "name", None) == "torch":
            raise ImportError(
                f"{path}: a .pt model file needs the training install (pip install "
                "'defectkit[train]'); this install runs exported .onnx models only"
            ) from None
        raise

    model = load_model(path, device=device)
    if params:
        model.set_params(**params)
    return TorchScorer(model)


#: runtime settings an ONNX model takes; the others (feature cache) have no meaning there
_ONNX_PARAMS = ("batch_size", "threads", "decode_workers")
_IGNORED_BY_ONNX = ("cache_dir", "use_cache")


def _onnx_scorer(path: Path, device: str, params) -> Scorer:
    from .onnx_scorer import OnnxScorer

    if device not in ("auto", "cpu"):
        raise ValueError(f"{path}: ONNX models run on the CPU in this defectkit (got device {device!r})")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}" if not path.exists() else f"'{path}' is not a file")
    unknown = sorted(set(params) - set(_ONNX_PARAMS) - set(_IGNORED_BY_ONNX))
    if unknown:
        raise ValueError(
            f"unknown runtime setting(s) {', '.join(unknown)} for an ONNX model; accepted: {', '.join(_ONNX_PARAMS)}"
        )
    return OnnxScorer(path, **{k: v for k, v in params.items() if k in _ONNX_PARAMS})
