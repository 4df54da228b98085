"""The estimator protocol every method shares: ``fit``, ``predict``, ``save`` / ``load``.

As in scikit-learn, a constructor only stores its keyword arguments (read back by
``get_params``, changed by ``set_params``); checking them, resolving the device and
building the backbone happen in ``fit``/``load`` or lazily in a property; learned state
ends with ``_``. The base parameters are declared once, here: a method's constructor
lists its own parameters and passes ``**base`` on.

A model file (``utils.model_file``) carries a format version, the defectkit version,
the method's registered name, its parameters, the backbone and the preprocessing, so a
model loads and preprocesses new images exactly as it was trained. Loading never runs
code from the file.

Every fitted model also carries decision thresholds (``thresholds_``,
``deploy.thresholds.Thresholds``), set in one place, :meth:`AnomalyModel.calibrate`, from
normal training images the method held out and never trained on.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .. import __version__
from ..backbones import Backbone, create_backbone
from ..data.batches import MIN_IMAGE_SIDE, ImageBatch, NativeBatch, load_batch, load_native
from ..data.preprocess import Box, Preprocess
from ..data.samples import Sample
from ..data.splits import split_validation
from ..data.tiling import Stitcher, Tiling
from ..deploy.thresholds import DEFAULT_FPR, Thresholds, check_fpr
from ..deploy.thresholds import calibrate as calibrate_thresholds
from ..features import FeatureExtractor
from ..utils.device import resolve_device, seed_everything
from ..utils.images import to_uint8
from ..utils.model_file import (
    MODEL_FORMAT,
    MODEL_FORMAT_VERSION,
    NotAModelFileError,
    check_format,
    read_model_file,
    write_model_file,
)
from ..utils.progress import progress as progress_bar
from .components.bounds import check_strides
from .registry import method_class

ImagesLike = Union[torch.Tensor, ImageBatch, NativeBatch, Sequence[Union[str, Path, Sample]]]

#: parameters every method takes; they have their own CLI options
BASE_PARAMS = (
    "backbone",
    "weights",
    "image_size",
    "crop_size",
    "device",
    "seed",
    "batch_size",
    "cache_dir",
    "use_cache",
    "resize",
    "tile_size",
    "tile_overlap",
    "fpr",
)
#: changing one of these invalidates the built backbone
_BACKBONE_PARAMS = ("backbone", "weights", "device")


def floor_outside(maps: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """N x 1 x S x S maps with every pixel outside ``valid`` (N x S x S bool) set to the lowest
    value of that image's valid pixels: padding never scores above the real background."""
    v = valid[:, None]
    floor = maps.masked_fill(~v, float("inf")).flatten(1).amin(dim=1).view(-1, 1, 1, 1)
    return torch.where(v, maps, floor.expand_as(maps))


def patch_centres(valid: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Which cells of an h x w patch grid have their centre on a valid pixel (N x S x S bool
    -> N x h*w bool). An image whose real pixels hold no cell centre keeps all its cells."""
    size_h, size_w = valid.shape[-2:]
    ys = ((torch.arange(h, device=valid.device) + 0.5) * size_h / h).long().clamp(max=size_h - 1)
    xs = ((torch.arange(w, device=valid.device) + 0.5) * size_w / w).long().clamp(max=size_w - 1)
    cells = valid[:, ys][:, :, xs].reshape(len(valid), h * w)
    return cells | ~cells.any(dim=1, keepdim=True)


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
        device: Union[str, torch.device] = "auto",
        seed: int = 0,
        batch_size: int = 8,
        cache_dir: Optional[str] = None,
        use_cache: bool = True,
        resize: str = "square",
        tile_size: Optional[int] = None,
        tile_overlap: int = 32,
        fpr: float = DEFAULT_FPR,
    ):
        self.backbone = backbone
        self.weights = weights
        self.image_size = image_size
        self.crop_size = crop_size
        self.device = device
        self.seed = seed
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.use_cache = use_cache
        self.resize = resize
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.fpr = fpr

    # ---- parameters -------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> List[str]:
        """Constructor keywords of the class and its bases (``**base`` pass-throughs excluded)."""
        names: List[str] = []
        for klass in cls.__mro__:
            if klass is object or "__init__" not in vars(klass):
                continue
            for name, p in inspect.signature(vars(klass)["__init__"]).parameters.items():
                if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and name not in names:
                    names.append(name)
        return names

    def get_params(self) -> Dict[str, Any]:
        """Constructor arguments, read back from the attributes of the same name."""
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params: Any) -> "AnomalyModel":
        """Change constructor parameters (e.g. ``batch_size`` or ``device`` of a loaded model)."""
        known = self.param_names()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(unknown)} for {self.method}; accepted: {', '.join(known)}"
            )
        for name, value in params.items():
            setattr(self, name, value)
        if any(name in _BACKBONE_PARAMS for name in params):
            self.__dict__.pop("_backbone_cache", None)
        return self

    def check_params(self) -> None:
        """ValueError for a parameter value the method cannot use (called by ``fit`` and the factory)."""
        size = Preprocess(
            self.image_size, self.crop_size, self.resize
        ).output_size  # checks image_size, crop_size, resize
        if self.tile_size is not None:
            Tiling(self.tile_size, self.tile_overlap)  # checks both
            if self.crop_size is not None:
                raise ValueError("tiling (tile_size) and crop_size do not combine: tiles are scored whole")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if not isinstance(self.device, (str, torch.device)):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        strides = check_strides(self.feature_strides)
        if size < self.min_image_size:
            what = "--crop-size" if self.crop_size is not None else "--image-size"
            raise ValueError(
                f"image size {size} px is too small for {self.method}: its coarsest feature map (stride "
                f"{max(strides)}) needs at least 2x2 cells, so the model input must be at least "
                f"{self.min_image_size} px ({what})"
            )

    @property
    def feature_strides(self) -> Tuple[int, ...]:
        """The backbone strides the method reads (its ``strides``; a method without one overrides this)."""
        return tuple(getattr(self, "strides", (8, 16)))

    @property
    def min_image_size(self) -> int:
        """Smallest model input side: 2x2 cells on the coarsest feature map, and at least MIN_IMAGE_SIDE."""
        return max(MIN_IMAGE_SIDE, 2 * max(int(s) for s in self.feature_strides))
        check_fpr(self.fpr)

    # ---- derived set-up (properties, so constructors stay plain) ---------------------------
    @property
    def preprocess(self) -> Preprocess:
        """Resize/crop of this model's inputs (of each tile, when tiled), from ``image_size``,
        ``crop_size`` and ``resize``; image files under MIN_IMAGE_SIDE px on a side are refused."""
        return Preprocess(self.image_size, self.crop_size, self.resize, min_input_side=MIN_IMAGE_SIDE)

    @property
    def tiling_(self) -> Optional[Tiling]:
        """The tiling of large images (``tile_size``/``tile_overlap``), None when images are resized whole."""
        return None if self.tile_size is None else Tiling(int(self.tile_size), int(self.tile_overlap))

    def _tiling_or_raise(self) -> Tiling:
        tiling = self.tiling_
        if tiling is None:
            raise ValueError(f"this {self.method} model is not tiled (tile_size is None)")
        return tiling

    @property
    def device_(self) -> torch.device:
        """The torch device ``device`` resolves to (``auto``: CUDA when available)."""
        return resolve_device(self.device)

    @property
    def backbone_(self) -> Backbone:
        """The frozen backbone module, built on first use on ``device_``."""
        cached = self.__dict__.get("_backbone_cache")
        if cached is None:
            cached = create_backbone(self.backbone, self.weights).to(self.device_)
            self.__dict__["_backbone_cache"] = cached
        return cached

    @property
    def fitted_(self) -> bool:
        return bool(self.__dict__.get("_fitted", False))

    def _fit_info(self) -> Dict[str, Any]:
        """``fit_info_``, created on first use: a head can also be trained without ``fit``."""
        return self.__dict__.setdefault("fit_info_", {})

    def feature_extractor(self, strides: Sequence[int]) -> FeatureExtractor:
        return FeatureExtractor(
            self.backbone_, self.preprocess, strides, self.device_, self.batch_size, self.cache_dir, self.use_cache
        )

    def as_tensor(self, images: ImagesLike) -> torch.Tensor:
        """Image files or Samples -> preprocessed N x 3 x S x S batch; tensors pass through."""
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(f"expected an N x 3 x H x W tensor in [0, 1], got {tuple(images.shape)}")
            return images
        if isinstance(images, ImageBatch):
            return images.images
        if isinstance(images, NativeBatch):
            raise ValueError(
                "a NativeBatch holds full-resolution images of a tiled model; as_tensor takes files, "
                "Samples, an ImageBatch or a tensor"
            )
        paths = [Path(i.path) if isinstance(i, Sample) else Path(i) for i in images]
        batch, _, _ = load_batch(paths, self.preprocess, on_error="raise")
        return batch.images

    def load_inputs(self, items: Sequence[Union[str, Path, Sample]], on_error: str = "raise"):
        """Read files as this model takes them -> (batch, kept items, errors as (path, reason)).

        The batch is an ``ImageBatch`` (preprocessed, with each image's real-pixel box) or,
        for a tiled model, a ``NativeBatch`` (decoded at full resolution); ``predict``
        takes either. ``on_error="skip"`` leaves unreadable files out and reports them."""
        if self.tiling_ is not None:
            return load_native(items, on_error)
        return load_batch(items, self.preprocess, on_error)

    def _as_batch(self, images: ImagesLike):
        if isinstance(images, (ImageBatch, NativeBatch)):
            return images
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(f"expected an N x 3 x H x W tensor in [0, 1], got {tuple(images.shape)}")
            if self.tiling_ is not None:
                return NativeBatch(list(to_uint8(images)))
            s = images.shape[-1]
            return ImageBatch(images, [Box(0, 0, images.shape[-2], s, s)] * len(images))
        items = [i.path if isinstance(i, Sample) else Path(i) for i in images]
        return self.load_inputs(items, on_error="raise")[0]

    # ---- protocol ------------------------------------------------------------------------
    def fit(self, train_data: Any, progress: bool = True) -> "AnomalyModel":
        """Learn from normal images: a dataset with ``.train``, Samples, or image paths.

        A tiled model (``tile_size``) trains on the windows of every image at native
        resolution; the held-out validation images are then whole source images.

        After training, the normal images the method held out (:meth:`_hold_out`) are
        scored by the final model and set ``thresholds_`` (:meth:`calibrate`); without a
        hold-out, ``thresholds_`` is None.
        """
        self.check_params()
        seed_everything(self.seed)
        start = time.perf_counter()
        self.fit_info_: Dict[str, Any] = {}
        self.thresholds_: Optional[Thresholds] = None
        self.__dict__["_held_out"] = []
        paths = training_paths(train_data)
        try:
            if self.tiling_ is not None:
                source = paths
                paths, groups = self._training_tiles(paths, progress)
                self.__dict__["_split_groups"] = groups
                self.fit_info_["tiles"] = {**self.tiling_.to_dict(), "source_images": len(source), "tiles": len(paths)}
            self._fit(paths, progress)
        finally:
            self.__dict__.pop("_split_groups", None)
        self.fit_info_["train_seconds"] = time.perf_counter() - start
        self._fitted = True
        held_out = self.__dict__.pop("_held_out", [])
        if held_out:
            # where they are, so `defectkit export` can check the exported graph on them
            self.fit_info_["held_out_files"] = [str(Path(p).resolve()) for p in held_out]
            self.calibrate(
                held_out, source=f"{len(held_out)} held-out normal training images (not trained on)", progress=progress
            )
        else:
            self.fit_info_["thresholds"] = "none: no normal images were held out"
        return self

    def _hold_out(self, paths: Sequence[Path], fraction: float) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """The seeded validation split of ``paths`` (``data.splits.split_validation``) -> (train, held-out
        indices or None). ``fit`` scores the held-out images after training to set the thresholds.

        Training tiles are split by source image, so no held-out tile overlaps a trained one."""
        train_idx, val_idx = split_validation(
            len(paths), fraction, self.seed, groups=self.__dict__.get("_split_groups")
        )
        self.__dict__["_held_out"] = [] if val_idx is None else [Path(paths[i]) for i in val_idx]
        return train_idx, val_idx

    def calibrate(
        self,
        normal_images: Optional[ImagesLike] = None,
        *,
        fpr: Optional[float] = None,
        pixel_fpr: Optional[float] = None,
        defects: Optional[Sequence[Sample]] = None,
        source: Optional[str] = None,
        defect_source: str = "annotated defects",
        progress: bool = False,
    ) -> Thresholds:
        """Set ``thresholds_`` from normal images the model did not train on (never test data).

        ``normal_images``: score them and take the quantile rule at ``fpr`` (default: the
        ``fpr`` parameter; a given ``fpr`` becomes the parameter). Without them, the
        held-out normal scores stored in ``thresholds_`` are re-used, so thresholds can be
        re-set without retraining. ``defects``: annotated defect Samples (with masks) for
        F1-max, the normals as negatives (``deploy.thresholds``).
        """
        if not self.fitted_:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or load() first")
        if fpr is not None:
            self.fpr = check_fpr(fpr)
        t0 = time.perf_counter()
        if normal_images is not None:
            scores, maps = self._predict_chunked(normal_images, progress, "calibration")
            thresholds = calibrate_thresholds(
                scores, maps, self.fpr, pixel_fpr, source or f"{len(scores)} normal images"
            )
        else:
            current = getattr(self, "thresholds_", None)
            if current is None or not current.normal_scores:
                raise ValueError(
                    "this model stores no held-out normal scores: give normal images it did not "
                    "train on (CLI: defectkit threshold --normals DIR)"
                )
            thresholds = current.with_fpr(self.fpr, pixel_fpr)
        if defects is not None:
            defects = list(defects)
            if not defects:
                raise ValueError("no defect images given for F1-max")
            d_scores, d_maps = self._predict_chunked(defects, progress, "defects")
            masks = None
            if all(getattr(d, "mask_path", None) is not None for d in defects):
                from ..data.batches import load_masks

                masks = load_masks(defects, self.preprocess)[:, 0].numpy() > 0.5
            thresholds = thresholds.with_f1(d_scores, d_maps if masks is not None else None, masks, defect_source)
        self.thresholds_ = thresholds
        info = self._fit_info()
        info["calibration_seconds"] = time.perf_counter() - t0
        info["thresholds"] = thresholds.describe()
        return thresholds

    def _predict_chunked(self, images: ImagesLike, progress: bool, desc: str) -> Tuple[np.ndarray, np.ndarray]:
        """``predict`` in chunks of files (bounded memory) -> (scores, maps) as numpy arrays."""
        if isinstance(images, (torch.Tensor, ImageBatch, NativeBatch)):
            return self.predict(images)
        items = list(images)
        step = max(1, self.batch_size) * 4
        scores, maps = [], []
        for start in progress_bar(range(0, len(items), step), desc=desc, unit="chunk", enabled=progress):
            s, m = self.predict(items[start : start + step])
            scores.append(s)
            maps.append(m)
        if not scores:
            raise ValueError(f"no images given for {desc}")
        return np.concatenate(scores), np.concatenate(maps)

    def _tile_dir(self) -> Path:
        from ..features.extractor import default_cache_dir

        return Path(self.cache_dir or default_cache_dir()) / "tiles"

    def _training_tiles(self, paths: List[Path], progress: bool) -> Tuple[List[Path], List[int]]:
        from ..data.tiles import write_tiles

        tiling = self._tiling_or_raise()
        tiles, groups = [], []
        for i, p in enumerate(progress_bar(paths, desc="tiles", unit="img", enabled=progress)):
            out = write_tiles(p, tiling, self._tile_dir())
            tiles.extend(out)
            groups.extend([i] * len(out))
        return tiles, groups

    def tile_samples(self, samples: Sequence[Sample]) -> List[Sample]:
        """Annotated defects (Samples with masks) -> the tiles that hold defect pixels, as
        Samples of their own (for supervised methods of a tiled model)."""
        from ..data.tiles import write_defect_tiles

        tiling = self._tiling_or_raise()
        out: List[Sample] = []
        for s in samples:
            out.extend(write_defect_tiles(s, tiling, self._tile_dir()))
        return out

    @torch.inference_mode()
    def predict(self, images: ImagesLike) -> Tuple[np.ndarray, np.ndarray]:
        """-> (image scores N, anomaly maps N x S x S), higher = more anomalous.

        ``images``: files, Samples, an N x 3 x H x W tensor in [0, 1], or a batch from
        ``load_inputs``. With ``resize="keep"`` the padding of every image is masked: its
        map values are set to the lowest value of the image's real pixels and the image
        score is computed on the real pixels only. A tiled model returns maps at the
        images' own resolution (N x H x W; all images of one call must share a size),
        stitched from its windows, and the image score is read off the stitched map."""
        if not self.fitted_:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or load() first")
        batch = self._as_batch(images)
        if isinstance(batch, NativeBatch):
            if self.tiling_ is None:
                raise ValueError("a NativeBatch (full-resolution images) needs a tiled model; use load_inputs()")
            return self._predict_tiled(batch)
        scores, maps = [], []
        device = self.device_
        for start in range(0, len(batch), self.batch_size):
            part = batch[start : start + self.batch_size]
            x = part.images.to(device)
            if part.padded:
                valid = part.valid().to(device)
                s, m = self._predict_valid(x, valid)
                m = floor_outside(m, valid)
            else:
                s, m = self._predict_tensor(x)
            scores.append(s.float().cpu())
            maps.append(m.float().cpu())
        if not scores:
            size = self.preprocess.output_size
            return np.zeros(0, np.float32), np.zeros((0, size, size), np.float32)
        return torch.cat(scores).numpy(), torch.cat(maps)[:, 0].numpy()

    def _predict_tiled(self, batch: NativeBatch) -> Tuple[np.ndarray, np.ndarray]:
        """Score each image window by window at native resolution and stitch the maps."""
        sizes = sorted({tuple(img.shape[:2]) for img in batch.images})
        if len(sizes) > 1:
            raise ValueError(
                f"a tiled model predicts images of one size per call, got sizes {sizes}; predict them one at a time"
            )
        tiling, pre, device = self._tiling_or_raise(), self.preprocess, self.device_
        scores, maps = [], []
        for img in batch.images:
            height, width = img.shape[:2]
            stitcher = Stitcher(tiling, height, width)
            pending: List[Tuple[int, int, torch.Tensor]] = []

            def flush(pending: List[Tuple[int, int, torch.Tensor]], stitcher: Stitcher) -> None:
                x = torch.stack([t for _, _, t in pending]).to(device)
                _, m = self._predict_tensor(x)
                m = m.float()
                if m.shape[-1] != tiling.size:
                    m = torch.nn.functional.interpolate(
                        m, size=(tiling.size, tiling.size), mode="bilinear", align_corners=False
                    )
                for (top, left, _), amap in zip(pending, m[:, 0].cpu().numpy()):
                    stitcher.add(amap, top, left)
                pending.clear()

            for top, left, window, _ in tiling.tiles(img):
                pending.append((top, left, pre(window)))
                if len(pending) == self.batch_size:
                    flush(pending, stitcher)
            if pending:
                flush(pending, stitcher)
            full = torch.from_numpy(stitcher.result())
            scores.append(
                float(self.map_image_scores(full[None, None], torch.ones((1, height, width), dtype=torch.bool))[0])
            )
            maps.append(full.numpy())
        if not maps:
            return np.zeros(0, np.float32), np.zeros((0, 0, 0), np.float32)
        return np.asarray(scores, np.float32), np.stack(maps)

    def _predict_valid(self, images: torch.Tensor, valid: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Like ``_predict_tensor``, with the image score computed on the ``valid`` pixels only
        (N x S x S bool). With every pixel valid it must equal ``_predict_tensor``; methods
        whose score is not a function of the map override it (PatchCore)."""
        _, maps = self._predict_tensor(images)
        return self.map_image_scores(maps, valid), maps

    def map_image_scores(self, maps: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The method's image score read off N x 1 x H x W maps, over the ``valid`` pixels:
        their maximum (PRN overrides it with its top-k mean)."""
        return maps[:, 0].masked_fill(~valid, float("-inf")).flatten(1).amax(dim=1)

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
        thresholds: Optional[Thresholds] = getattr(self, "thresholds_", None)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --force) to replace it")
        payload = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "defectkit_version": __version__,
            "method": self.method,
            "params": self.get_params(),
            "backbone": {
                "name": self.backbone,
                "weights_id": self.backbone_.weights_id,
                "revision": self.backbone_.revision,
            },
            "preprocess": self.preprocess.to_dict(),
            "fit_info": self.fit_info_,
            "thresholds": None if thresholds is None else thresholds.to_dict(),
            "state": self._get_state(),
        }
        return write_model_file(path, payload)

    @classmethod
    def load(cls, path: Union[str, Path], device: str = "auto") -> "AnomalyModel":
        """Load any defectkit model file (the method is read from the file); never runs code from it."""
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(f"'{path}' is a folder, not a model file")
        if not path.exists():
            raise FileNotFoundError(f"model file not found: {path}")
        if not path.is_file():
            raise NotAModelFileError(f"'{path}' is not a regular file, so not a model file")
        payload = read_model_file(path)
        check_format(payload, path)
        model_cls = method_class(payload["method"])
        if cls is not AnomalyModel and not issubclass(model_cls, cls):
            raise ValueError(f"{path} holds a {payload['method']!r} model, not {cls.method!r}")
        params = {**model_cls.legacy_params, **payload["params"], "device": device}
        known = model_cls.param_names()
        model = model_cls(**{k: v for k, v in params.items() if k in known})
        saved_revision = payload.get("backbone", {}).get("revision", 1)
        current_revision = model.backbone_.revision
        if saved_revision != current_revision:
            raise ValueError(
                f"{path} was trained on revision {saved_revision} of backbone "
                f"{payload['backbone']['name']!r}, which now computes revision {current_revision} "
                "features; its heads would not match them. Retrain the model with this defectkit."
            )
        model._set_state(payload["state"])
        model.fit_info_ = payload.get("fit_info", {})
        stored = payload.get("thresholds")
        try:
            model.thresholds_ = None if stored is None else Thresholds.from_dict(stored)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{path}: the stored thresholds are unusable ({exc}); re-set them with "
                "`defectkit threshold --model ... --normals DIR`"
            ) from None
        model._fitted = True
        return model
