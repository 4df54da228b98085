"""PaDiM (Defard et al., ICPR 2021): a Gaussian of normal patch features at every grid position.

The frozen backbone's stride-4, 8 and 16 stages are resized to one grid and stacked
(24 + 40 + 112 = 176 channels for EfficientNet-Lite0); ``n_features`` of those channels,
drawn at random with the run's seed, describe each position. Training fits one
multivariate Gaussian per position (mean and covariance + ``covariance_eps`` * I, in one
streaming pass, ``gaussian.GaussianAccumulator``); the score of a location is the
Mahalanobis distance of its feature to that position's Gaussian. The map is upsampled to
the input size and blurred (sigma 4) as for every method; the image score is its maximum.

PaDiM trains no weights. As PatchCore, it holds out ``calibration_fraction`` of the normal
images (the seeded validation split), fits the Gaussians on the rest and scores the
held-out ones to set its thresholds. See docs/methods/padim.md.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from ...features import fuse_stages, upsample_maps
from ..base import AnomalyModel
from ..components.bounds import check_bounds
from ..registry import register_method
from .gaussian import GaussianAccumulator, mahalanobis, precision_matrices

#: images whose features are held in memory at once while the Gaussians are accumulated
FIT_CHUNK = 32


@register_method
class PaDiM(AnomalyModel):
    """PaDiM: per-position multivariate Gaussian of stacked stage features, Mahalanobis distance.

    ``strides`` the stages stacked; ``grid_stride`` the grid the Gaussians live on (finer
    stages are average-pooled to it, coarser ones resized bilinearly); ``n_features`` the
    random channel subset (None: every stacked channel); ``covariance_eps`` the ridge
    added to every covariance; ``calibration_fraction`` the normal images held out of the
    fit and scored to set the thresholds (0: fit on every image, no thresholds).

    Learned state: ``channels_`` (the kept channel indices), ``mean_`` (P x D),
    ``precision_`` (P x D x D inverse covariances), ``grid_`` (h, w), ``thresholds_``.
    """

    method = "padim"

    def __init__(
        self,
        strides: Tuple[int, ...] = (4, 8, 16),
        grid_stride: int = 8,
        n_features: Optional[int] = 176,
        covariance_eps: float = 0.01,
        blur_sigma: float = 4.0,
        calibration_fraction: float = 0.15,
        **base: Any,
    ):
        super().__init__(**base)
        self.strides = strides
        self.grid_stride = grid_stride
        self.n_features = n_features
        self.covariance_eps = covariance_eps
        self.blur_sigma = blur_sigma
        self.calibration_fraction = calibration_fraction

    def check_params(self) -> None:
        super().check_params()
        if self.grid_stride not in self.strides:
            raise ValueError(f"grid_stride must be one of strides {tuple(self.strides)}, got {self.grid_stride!r}")
        check_bounds(self, n_features=">= 1", covariance_eps="> 0", blur_sigma=">= 0")
        if not 0.0 <= self.calibration_fraction < 1.0:
            raise ValueError(f"calibration_fraction must be in [0, 1), got {self.calibration_fraction!r}")

    def stacked_features(self, stage_features: Dict[int, torch.Tensor]) -> torch.Tensor:
        """{stride: N x C x h x w} -> N x C_total x H x W on the ``grid_stride`` grid, all channels."""
        fused = fuse_stages(stage_features, self.strides, patch_size=1)
        finest = min(self.strides)
        if self.grid_stride > finest:
            factor = int(self.grid_stride) // finest
            fused = F.avg_pool2d(fused, factor, stride=factor, ceil_mode=True)
        return fused

    def choose_channels(self, total: int) -> torch.Tensor:
        """The sorted random subset of ``n_features`` of ``total`` stacked channels, drawn with ``seed``."""
        if self.n_features is None or self.n_features == total:
            return torch.arange(total)
        if self.n_features > total:
            raise ValueError(
                f"n_features={self.n_features} but the stages {tuple(self.strides)} of "
                f"{self.backbone} stack only {total} channels; choose n_features <= {total}"
            )
        generator = torch.Generator().manual_seed(int(self.seed))
        return torch.randperm(total, generator=generator)[: self.n_features].sort().values

    def position_features(self, stage_features: Dict[int, torch.Tensor]) -> torch.Tensor:
        """{stride: N x C x h x w} -> N x P x D: the kept channels at every grid position."""
        stacked = self.stacked_features(stage_features)[:, self.channels_.to(stage_features[min(self.strides)].device)]
        return stacked.flatten(2).transpose(1, 2)

    def _fit(self, paths: List[Path], progress: bool) -> None:
        t0 = time.perf_counter()
        train_idx, held_idx = self._hold_out(paths, self.calibration_fraction)
        train = [paths[i] for i in train_idx]
        extractor = self.feature_extractor(self.strides)
        accumulator: Optional[GaussianAccumulator] = None
        chunks = range(0, len(train), FIT_CHUNK)
        for k, start in enumerate(chunks):
            stages = extractor(train[start : start + FIT_CHUNK], desc=f"features {k + 1}/{len(chunks)}")
            if accumulator is None:
                stacked = self.stacked_features(stages)
                self.grid_ = tuple(int(s) for s in stacked.shape[-2:])
                self.channels_ = self.choose_channels(stacked.shape[1])
                accumulator = GaussianAccumulator(self.grid_[0] * self.grid_[1], len(self.channels_))
            accumulator.update(self.position_features(stages))
        t1 = time.perf_counter()
        assert accumulator is not None  # training_paths() refuses an empty training set
        mean, cov = accumulator.mean_and_covariance(float(self.covariance_eps))
        self.mean_ = mean.float()
        self.precision_ = precision_matrices(cov).float()
        self.fit_info_.update(
            feature_seconds=t1 - t0,
            gaussian_seconds=time.perf_counter() - t1,
            grid=list(self.grid_),
            features=int(len(self.channels_)),
            stacked_channels=int(sum(self.backbone_.stage_channels[s] for s in self.strides)),
            train_images=int(len(train_idx)),
            val_images=0 if held_idx is None else int(len(held_idx)),
            val_image_names=[] if held_idx is None else [paths[i].name for i in held_idx],
        )

    def _predict_tensor(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        stages = self.feature_extractor(self.strides).run_backbone(images)
        feats = self.position_features(stages)
        h, w = self.grid_
        if feats.shape[1] != h * w:
            raise ValueError(
                f"images of {tuple(images.shape[-2:])} px give {feats.shape[1]} grid positions, the "
                f"model was fitted on {h} x {w}: feed images preprocessed as in training"
            )
        distances = mahalanobis(feats, self.mean_.to(feats.device), self.precision_.to(feats.device))
        maps = upsample_maps(distances.reshape(-1, 1, h, w), self.preprocess.output_size, self.blur_sigma)
        return maps.flatten(1).amax(dim=1), maps

    def _get_state(self) -> Dict[str, Any]:
        return {
            "channels": self.channels_.cpu(),
            "mean": self.mean_.cpu(),
            "precision": self.precision_.cpu(),
            "grid": torch.tensor(self.grid_),
        }

    def _set_state(self, state: Dict[str, Any]) -> None:
        self.channels_ = state["channels"].long()
        self.mean_ = state["mean"]
        self.precision_ = state["precision"]
        self.grid_ = tuple(int(v) for v in state["grid"])
