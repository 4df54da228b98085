"""The estimator protocol every method shares: ``fit``, ``predict``, ``save`` / ``load``.

Like scikit-learn estimators, a model is built from plain keyword parameters (recorded
with ``get_params`` and stored in the model file), learns in ``fit``, and is used through
``predict``. A model file is one ``torch.save`` archive carrying a format version, the
defectkit version, the method, its parameters, the backbone and the preprocessing, so a
model loads and preprocesses new images exactly as it was trained, without the user
restating anything.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch

from .. import __version__
from ..atomic import atomic_torch_save
from ..backbones import Backbone, create_backbone
from ..data.batches import load_images
from ..data.preprocess import Preprocess
from ..data.samples import Sample
from ..device import resolve_device, seed_everything
from ..feature_cache import FeatureExtractor

MODEL_FORMAT = "defectkit-model"
MODEL_FORMAT_VERSION = 1

ImagesLike = Union[torch.Tensor, Sequence[Union[str, Path, Sample]]]

_METHODS: Dict[str, Type["AnomalyModel"]] = {}


def register_method(cls: Type["AnomalyModel"]) -> Type["AnomalyModel"]:
    _METHODS[cls.method] = cls
    return cls


def method_class(name: str) -> Type["AnomalyModel"]:
    from . import _load_all  # noqa: F401 - registers the built-in methods

    if name not in _METHODS:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def available_methods() -> List[str]:
    from . import _load_all  # noqa: F401

    return sorted(_METHODS)


def training_paths(train_data: Any) -> List[Path]:
    """Accept a dataset (with ``.train``), Samples or paths; keep only normal images."""
    items = getattr(train_data, "train", train_data)
    paths = []
    for item in items:
        if isinstance(item, Sample):
            if item.label == 0:
                paths.append(Path(item.path))
        else:
            paths.append(Path(item))
    if not paths:
        raise ValueError("no normal training images given to fit()")
    return paths


class AnomalyModel:
    """Base class: subclasses set ``method`` and implement ``_fit``, ``_predict_tensor`` and state I/O."""

    method: str = "base"
    #: Values for parameters that older model files do not carry: the behaviour those files
    #: were trained with, which may differ from today's default (e.g. a new feature option).
    legacy_params: Dict[str, Any] = {}

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        weights: Optional[str] = None,
        image_size: int = 256,
        crop_size: Optional[int] = None,
        device: str = "auto",
        seed: int = 0,
        batch_size: int = 8,
        cache_dir: Optional[str] = None,
        use_cache: bool = True,
    ):
        self.backbone_name = backbone
        self.weights = weights
        self.image_size = image_size
        self.crop_size = crop_size
        self.device_name = device
        self.seed = seed
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.use_cache = use_cache
        self.preprocess = Preprocess(image_size, crop_size)
        self.device = resolve_device(device)
        self._backbone: Optional[Backbone] = None
        self.fitted_ = False
        self.fit_info_: Dict[str, Any] = {}

    # ---- parameters -------------------------------------------------------------------
    def get_params(self) -> Dict[str, Any]:
        """Constructor arguments, read back from attributes (as scikit-learn does)."""
        params = {}
        for cls in type(self).__mro__:
            if cls is object:
                continue
            for name in inspect.signature(cls.__init__).parameters:
                if name in ("self", "kwargs", "args") or name in params:
                    continue
                attr = {"backbone": "backbone_name", "device": "device_name"}.get(name, name)
                params[name] = getattr(self, attr)
        return params

    # ---- shared machinery ----------------------------------------------------------------
    @property
    def backbone(self) -> Backbone:
        if self._backbone is None:
            self._backbone = create_backbone(self.backbone_name, self.weights).to(self.device)
        return self._backbone

    def feature_extractor(self, strides: Sequence[int]) -> FeatureExtractor:
        return FeatureExtractor(
            self.backbone, self.preprocess, strides, self.device, self.batch_size, self.cache_dir, self.use_cache
        )

    def as_tensor(self, images: ImagesLike) -> torch.Tensor:
        """Image files or Samples -> preprocessed N x 3 x S x S batch; tensors pass through."""
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(f"expected an N x 3 x H x W tensor in [0, 1], got {tuple(images.shape)}")
            return images
        paths = [Path(i.path) if isinstance(i, Sample) else Path(i) for i in images]
        tensor, _, _ = load_images(paths, self.preprocess, on_error="raise")
        return tensor

    # ---- protocol ------------------------------------------------------------------------
    def fit(self, train_data: Any, progress: bool = True) -> "AnomalyModel":
        """Learn from normal images: a dataset with ``.train``, Samples, or image paths."""
        seed_everything(self.seed)
        start = time.perf_counter()
        self._fit(training_paths(train_data), progress)
        self.fit_info_["train_seconds"] = time.perf_counter() - start
        self.fitted_ = True
        return self

    @torch.inference_mode()
    def predict(self, images: ImagesLike) -> Tuple[np.ndarray, np.ndarray]:
        """-> (image scores N, anomaly maps N x S x S), higher = more anomalous."""
        if not self.fitted_:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or load() first")
        batch = self.as_tensor(images)
        scores, maps = [], []
        for start in range(0, len(batch), self.batch_size):
            s, m = self._predict_tensor(batch[start : start + self.batch_size].to(self.device))
            scores.append(s.float().cpu())
            maps.append(m.float().cpu())
        return torch.cat(scores).numpy(), torch.cat(maps)[:, 0].numpy()

    def _fit(self, paths: List[Path], progress: bool) -> None:
        raise NotImplementedError

    def _predict_tensor(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """N x 3 x S x S on the model's device -> (N scores, N x 1 x S x S maps)."""
        raise NotImplementedError

    def _get_state(self) -> Dict[str, Any]:
        raise NotImplementedError

    def _set_state(self, state: Dict[str, Any]) -> None:
        raise NotImplementedError

    # ---- persistence ---------------------------------------------------------------------
    def save(self, path: Union[str, Path], overwrite: bool = False) -> Path:
        """Write one versioned model file atomically; refuses to replace a file unless ``overwrite``."""
        if not self.fitted_:
            raise RuntimeError("cannot save a model that is not fitted")
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --force) to replace it")
        payload = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "defectkit_version": __version__,
            "method": self.method,
            "params": self.get_params(),
            "backbone": {
                "name": self.backbone_name,
                "weights_id": self.backbone.weights_id,
                "revision": self.backbone.revision,
            },
            "preprocess": self.preprocess.to_dict(),
            "fit_info": self.fit_info_,
            "state": self._get_state(),
        }
        atomic_torch_save(payload, path)
        return path

    @classmethod
    def load(cls, path: Union[str, Path], device: str = "auto") -> "AnomalyModel":
        """Load any defectkit model file (the method is read from the file)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"{path} is not a readable defectkit model file: {exc}") from exc
        if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
            raise ValueError(f"{path} is not a defectkit model file")
        if payload["format_version"] > MODEL_FORMAT_VERSION:
            raise ValueError(
                f"{path} has model format {payload['format_version']}, newer than this defectkit "
                f"({__version__}) reads ({MODEL_FORMAT_VERSION}); upgrade defectkit"
            )
        model_cls = method_class(payload["method"])
        if cls is not AnomalyModel and not issubclass(model_cls, cls):
            raise ValueError(f"{path} holds a {payload['method']!r} model, not {cls.method!r}")
        params = {**model_cls.legacy_params, **payload["params"], "device": device}
        model = model_cls(**params)
        saved_revision = payload.get("backbone", {}).get("revision", 1)
        current_revision = model.backbone.revision
        if saved_revision != current_revision:
            raise ValueError(
                f"{path} was trained on revision {saved_revision} of backbone "
                f"{payload['backbone']['name']!r}, which now computes revision {current_revision} "
                "features; its heads would not match them. Retrain the model with this defectkit."
            )
        model._set_state(payload["state"])
        model.fit_info_ = payload.get("fit_info", {})
        model.fitted_ = True
        return model
