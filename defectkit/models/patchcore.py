"""PatchCore (Roth et al., CVPR 2022): a memory bank of normal patch features, scored by NN distance.

The baseline every seed paper compares against. Training is feature extraction plus a
greedy coreset, no gradient steps (streamed: see ``components.bounded_coreset``); a location's score is the distance from its patch
feature to the nearest feature in the bank, and the image score is the largest patch
score reweighted by how isolated that nearest bank entry is (paper, Sec. 3.3).

PatchCore trains no weights, so it needs no validation split to choose an epoch; it
still holds out ``calibration_fraction`` of the normal images (seeded, as the trained
methods' validation split), builds its bank from the rest, and scores the held-out ones
to set its decision thresholds (``AnomalyModel.calibrate``). A bank built from every
image would score its own images near 0, so they cannot stand in for new normals.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from ..features import check_aggregation, fuse_stages, upsample_maps
from .base import AnomalyModel, patch_centres
from .components.bounded_coreset import StreamingCoreset
from .components.bounds import check_bounds, check_patch_size
from .components.nearest_neighbour import NearestNeighbourIndex, check_search_backend
from .registry import register_method

#: Training images whose backbone maps are held at once; each chunk is reduced to its coreset candidates.
STREAM_IMAGES = 32


@register_method
class PatchCore(AnomalyModel):
    """PatchCore: memory bank of normal patch features, nearest-neighbour distance as the score.

    ``calibration_fraction`` 0.15: normal images held out of the bank and scored to set
    the thresholds (0: the bank uses every image and the model has no thresholds).

    ``max_bank_size`` 4096: the bank holds ``coreset_ratio`` of the patches but at most this
    many rows, so fit time, memory and search cost stop growing with the number of images,
    and the exported graph's exact search (which costs in proportion to the bank) runs a
    bottle model at >= 40 img/s through ONNX Runtime on 2 cores; chosen on validation over
    16384 (docs/methods/patchcore.md, "A bounded bank"). ``candidate_factor`` 2: each chunk
    of ``STREAM_IMAGES`` images keeps its share of ``candidate_factor x max_bank_size``
    candidates (greedy k-center within the chunk) before the final greedy k-center
    (``components.bounded_coreset``). 0: no cap, the exact greedy coreset over every patch
    (what model files saved before the cap used).

    Learned state: ``memory_bank_`` (the coreset of normal patch features), ``thresholds_``.
    """

    method = "patchcore"
    #: Files saved before the cap kept every 10 % bank, chosen by exact greedy k-center.
    legacy_params = {"max_bank_size": 0}

    def __init__(
        self,
        strides: Tuple[int, ...] = (8, 16),
        patch_size: int = 3,
        coreset_ratio: float = 0.1,
        projection_dim: int = 32,
        num_neighbours: int = 9,
        blur_sigma: float = 4.0,
        search_backend: str = "auto",
        stage_balance: bool = True,
        aggregation: str = "mean",
        embed_dim: int = 128,
        calibration_fraction: float = 0.15,
        max_bank_size: int = 4096,
        candidate_factor: float = 2.0,
        **base: Any,
    ):
        super().__init__(**base)
        self.strides = strides
        self.patch_size = patch_size
        self.coreset_ratio = coreset_ratio
        self.projection_dim = projection_dim
        self.num_neighbours = num_neighbours
        self.blur_sigma = blur_sigma
        self.search_backend = search_backend
        self.stage_balance = stage_balance
        self.aggregation = aggregation  # "mean" or the official code's "adaptive" (features/fusion.py)
        self.embed_dim = embed_dim
        self.calibration_fraction = calibration_fraction
        self.max_bank_size = max_bank_size
        self.candidate_factor = candidate_factor

    def check_params(self) -> None:
        super().check_params()
        check_aggregation(self.aggregation, self.embed_dim)
        check_patch_size(self.patch_size)
        check_bounds(
            self,
            coreset_ratio="(0, 1]",
            max_bank_size=">= 0",
            candidate_factor=">= 1",
            projection_dim=">= 0",
            num_neighbours=">= 1",
            blur_sigma=">= 0",
        )
        check_search_backend(self.search_backend)
        if not 0.0 <= self.calibration_fraction < 1.0:
            raise ValueError(f"calibration_fraction must be in [0, 1), got {self.calibration_fraction!r}")

    def patch_features(self, stage_features: Dict[int, torch.Tensor]) -> torch.Tensor:
        """{stride: N x C x h x w} -> N x h x w x D patch features."""
        fused = fuse_stages(
            stage_features, self.strides, self.patch_size, self.stage_balance, self.aggregation, self.embed_dim
        )
        return fused.permute(0, 2, 3, 1)

    def _fit(self, paths: List[Path], progress: bool) -> None:
        t0 = time.perf_counter()
        train_idx, held_idx = self._hold_out(paths, self.calibration_fraction)
        train_paths = [paths[i] for i in train_idx]
        coreset: Optional[StreamingCoreset] = None
        patches_per_image = 0
        select_seconds = 0.0
        for _, stage_features in self.feature_extractor(self.strides).stream(train_paths, STREAM_IMAGES):
            feats = self.patch_features(stage_features)
            n, h, w, d = feats.shape
            if coreset is None:
                patches_per_image = h * w
                coreset = StreamingCoreset(
                    len(train_paths) * patches_per_image,
                    self.coreset_ratio,
                    self.max_bank_size,
                    self.projection_dim,
                    self.seed,
                    self.candidate_factor,
                )
            elif h * w != patches_per_image:
                raise ValueError(
                    f"training images give patch grids of {patches_per_image} and {h * w} "
                    "patches; PatchCore needs one input size for all"
                )
            t = time.perf_counter()
            coreset.add(feats.reshape(-1, d))
            select_seconds += time.perf_counter() - t
        assert coreset is not None  # fit refuses an empty training set before _fit
        t1 = time.perf_counter()
        self.memory_bank_ = coreset.finish(progress)
        self.__dict__.pop("_index", None)
        self.fit_info_.update(
            feature_seconds=t1 - t0 - select_seconds,
            coreset_seconds=time.perf_counter() - t1 + select_seconds,
            bank_size=int(self.memory_bank_.shape[0]),
            patches=int(coreset.total),
            coreset_candidates=int(coreset.pool_size),
            train_images=int(len(train_idx)),
            val_images=0 if held_idx is None else int(len(held_idx)),
            val_image_names=[] if held_idx is None else [paths[i].name for i in held_idx],
        )

    @property
    def index_(self) -> NearestNeighbourIndex:
        """Nearest-neighbour search over the bank, built on first use."""
        index = self.__dict__.get("_index")
        if index is None:
            index = self.__dict__["_index"] = NearestNeighbourIndex(
                self.memory_bank_.to(self.device_), self.search_backend
            )
        return index

    def _predict_tensor(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self._predict_valid(images, None)

    def _predict_valid(self, images: torch.Tensor, valid) -> Tuple[torch.Tensor, torch.Tensor]:
        """Maps and reweighted-max image scores; with ``valid`` (N x S x S bool) the image
        score is taken over the patches whose centre is a real pixel."""
        feats = self.patch_features(self.feature_extractor(self.strides).run_backbone(images))
        n, h, w, d = feats.shape
        flat = feats.reshape(-1, d)
        dist, nn_idx = self.index_.search(flat, k=1)
        patch_scores = dist[:, 0].reshape(n, h * w)
        maps = upsample_maps(patch_scores.reshape(n, 1, h, w), self.preprocess.output_size, self.blur_sigma)
        ranked = patch_scores if valid is None else patch_scores.masked_fill(~patch_centres(valid, h, w), float("-inf"))
        image_scores = self.reweighted_max(flat.reshape(n, h * w, d), ranked, nn_idx[:, 0].reshape(n, h * w))
        return image_scores, maps

    def reweighted_max(self, feats: torch.Tensor, patch_scores: torch.Tensor, nn_idx: torch.Tensor) -> torch.Tensor:
        """The paper's reweighting of the largest patch distance.

        With m* the bank entry nearest to the most anomalous test patch and N_b(m*) its
        b nearest bank neighbours (m* included), the weight is
        ``1 - exp(|f - m*|) / sum_{m in N_b(m*)} exp(|f - m|)``: a patch whose nearest
        normal feature sits in a sparse region of the bank gets a higher score.
        """
        best = patch_scores.argmax(dim=1)
        rows = torch.arange(len(best), device=best.device)
        s_star = patch_scores[rows, best]
        if self.num_neighbours <= 1:
            return s_star
        worst_feat = feats[rows, best]  # N x D
        m_star = nn_idx[rows, best]  # N
        bank = self.memory_bank_.to(worst_feat.device)
        k = min(self.num_neighbours, bank.shape[0])
        _, support = self.index_.search(bank[m_star], k=k)  # N x k (m* itself first)
        d = torch.linalg.vector_norm(worst_feat[:, None, :] - bank[support], dim=-1)  # N x k
        weight = 1.0 - torch.softmax(d, dim=1)[:, 0]
        return weight * s_star

    def _get_state(self) -> Dict[str, Any]:
        return {"memory_bank": self.memory_bank_.cpu()}

    def _set_state(self, state: Dict[str, Any]) -> None:
        self.memory_bank_ = state["memory_bank"]
        self.__dict__.pop("_index", None)
