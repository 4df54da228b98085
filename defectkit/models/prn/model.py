"""PRN, Prototypical Residual Network (Zhang et al., CVPR 2023): supervised by a few seen defects.

Frozen backbone stages of stride 4 / 8 / 16; per scale, k-means prototypes of the
normal feature maps (K = 10 % of the normal images) and the residual |F - P*| to the
nearest one (MP); multi-scale fusion (MF) of features and of residuals; multi-size
self-attention (MSA, 3 layers, patch sizes h, h/2, h/4, h/8) and another MF on the skip
connections of a U-Net-like decoder that outputs the anomaly map. Trained on batches
of normal : extended (EA, from the seen defects) : simulated (SA: HEA / HOA) anomalies
= 2 : 1 : 1 with SmoothL1 + 5 x focal loss; image score = mean of the top-100 map values.

Seen defects: ``model.fit(train_data, seen=samples_or_folder)`` -- the annotated defective
images (Samples with masks, e.g. from :func:`defectkit.data.seen_anomalies.draw_seen_anomalies`,
or a folder, see :func:`~defectkit.data.seen_anomalies.seen_from_folder`). Without them PRN
trains on SA only (EA's share of the batch goes to SA) and says so in ``fit_info_``.

CPU practicality: normal-image features come from the on-disk feature cache; synthetic
anomalies are generated into a pool whose backbone features are computed once per
refresh (prn_synthesis.py). The epoch kept is chosen on a validation split (held-out
normals + synthetic anomalies of other kinds made from them), never on test images.
See docs/methods/prn.md.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ...data.batches import load_images, load_masks
from ...data.samples import Sample
from ...data.seen_anomalies import seen_file_names, seen_from_folder
from ...synth.textures import resolve_textures
from ...synth.validation import builtin_anomalies
from ...utils.images import to_uint8
from ...utils.resize import resize_bilinear
from ..base import AnomalyModel
from ..components.bounds import check_bounds
from ..components.probability import probability
from ..components.training import check_loop_params, train_epochs
from ..components.validation import family_scores, subsample, validation_scores
from ..components.validation_split import ValidationAnomalies, check_val_split, validation_anomalies
from ..registry import register_method
from .decoder import PRNNetwork
from .losses import prn_loss, top_k_mean
from .prototypes import fit_prototypes, nearest_residuals
from .synthesis import DEFAULT_TARGET_SHAPES, AnomalyGenerators, FeaturePool, backbone_features

#: PRN's validation score also averages pixel AP (its paper reports it beside the AUROCs)
VALIDATION_METRICS = ("image_auroc", "pixel_auroc", "aupro", "pixel_ap")
SeenLike = Union[None, str, Path, Sequence[Sample]]


def resolve_seen(seen: SeenLike) -> List[Sample]:
    """None -> []; a folder -> its annotated defects; Samples must be defective and have masks."""
    if seen is None:
        return []
    if isinstance(seen, (str, Path)):
        return seen_from_folder(seen)
    seen = list(seen)
    for s in seen:
        if not isinstance(s, Sample) or s.label != 1 or s.mask_path is None:
            raise ValueError(f"seen anomalies must be defective Samples with a mask, got {s!r}")
    return seen


@register_method
class PRN(AnomalyModel):
    """PRN with the paper's defaults where the CPU allows; every hyper-parameter is an argument.

    Method parameters:
      ``strides`` (4, 8, 16): backbone stages; ``prototype_ratio`` 0.1 and ``kmeans_iters`` 300;
      ``use_prototypes`` / ``use_msa`` / ``use_mf``: ablation switches (all True = full PRN,
      all False = the U-Net baseline of the paper's table 4);
      ``head_dim`` 8: q/k/v channels per pixel of an MSA head; ``msa_depth`` 3;
      ``decoder_channels`` (32, 48, 64): decoder widths at strides 4 / 8 / 16;
      ``focal_weight`` 5, ``focal_alpha`` 0.5, ``focal_gamma`` 4: the loss;
      ``lr`` 1e-3 (paper 1e-4; see docs) and ``weight_decay`` 1e-5: Adam; ``epochs``: passes over the normal
      training images; ``train_batch_size`` 16 split ``batch_mix`` (2, 1, 1) normal : EA : SA;
      ``pool_size`` synthetic images per pool (half EA, half SA), regenerated every
      ``pool_refresh`` epochs; ``textures`` DTD folder for HEA (None: $DEFECTKIT_TEXTURES or
      ../shared/data/dtd_subset; HOA only when none is found); ``foreground`` "auto" (objects)
      or None (textures: whole image) and ``target_shapes`` for the target area;
      ``top_k`` 100: image score = mean of the top-k map values.
    Model selection: ``val_fraction`` of the normal images is held out and anomalies are made
    from them by ``val_split`` (``models.components.validation_split``): "suite" (default) the
    shared ``synth.validation_suite``, ``val_anomalies_per_image`` per family (at least 24; its
    texture family reads ``textures``), with per-family metrics of the kept epoch in
    ``fit_info_["val_families"]``; "own" ``val_anomalies_per_image`` anomalies per image of
    ``synth.validation.builtin_anomalies`` (blend / CutPaste / scar). Every ``val_every`` epochs
    the mean of validation I-AUROC, P-AUROC, AUPRO and pixel AP is computed, the best epoch's
    weights are kept, and training stops after ``patience`` validations without improvement
    (0: never early).

    Learned state: ``network_``, ``prototypes_``, ``feature_mean_`` / ``feature_std_``.
    """

    method = "prn"
    #: files saved before val_split existed chose their epoch on builtin_anomalies ("own")
    legacy_params = {"val_split": "own"}

    def __init__(
        self,
        strides: Tuple[int, ...] = (4, 8, 16),
        prototype_ratio: float = 0.1,
        kmeans_iters: int = 300,
        use_prototypes: bool = True,
        use_msa: bool = True,
        use_mf: bool = True,
        head_dim: int = 8,
        msa_depth: int = 3,
        decoder_channels: Tuple[int, ...] = (32, 48, 64),
        focal_weight: float = 5.0,
        focal_alpha: float = 0.5,
        focal_gamma: float = 4.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        epochs: int = 20,
        train_batch_size: int = 16,
        batch_mix: Tuple[int, int, int] = (2, 1, 1),
        pool_size: int = 256,
        pool_refresh: int = 10,
        textures: Optional[str] = None,
        foreground: Optional[str] = "auto",
        target_shapes: Optional[Tuple[str, ...]] = DEFAULT_TARGET_SHAPES,
        top_k: int = 100,
        val_fraction: float = 0.15,
        val_anomalies_per_image: int = 2,
        val_split: str = "suite",
        val_every: int = 1,
        patience: int = 5,
        **base: Any,
    ):
        super().__init__(**base)
        self.strides = strides
        self.prototype_ratio = prototype_ratio
        self.kmeans_iters = kmeans_iters
        self.use_prototypes = use_prototypes
        self.use_msa = use_msa
        self.use_mf = use_mf
        self.head_dim = head_dim
        self.msa_depth = msa_depth
        self.decoder_channels = decoder_channels
        self.focal_weight = focal_weight
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.train_batch_size = train_batch_size
        self.batch_mix = batch_mix
        self.pool_size = pool_size
        self.pool_refresh = pool_refresh
        self.textures = textures
        self.foreground = foreground
        self.target_shapes = target_shapes
        self.top_k = top_k
        self.val_fraction = val_fraction
        self.val_anomalies_per_image = val_anomalies_per_image
        self.val_split = val_split
        self.val_every = val_every
        self.patience = patience

    def check_params(self) -> None:
        super().check_params()
        check_loop_params(self)
        check_val_split(self.val_split)
        if self.train_batch_size < 2 or self.pool_size < 2:
            raise ValueError(
                f"train_batch_size and pool_size must be >= 2, got {self.train_batch_size}, {self.pool_size}"
            )
        mix = tuple(self.batch_mix)
        if len(mix) != 3 or min(mix) < 0 or mix[0] == 0:
            raise ValueError(f"batch_mix is (normal, EA, SA) with a positive normal share, got {self.batch_mix}")
        check_bounds(
            self,
            prototype_ratio="(0, 1]",
            kmeans_iters=">= 1",
            head_dim=">= 1",
            msa_depth=">= 1",
            focal_weight=">= 0",
            focal_alpha="[0, 1]",
            focal_gamma=">= 0",
            lr="> 0",
            weight_decay=">= 0",
            pool_refresh=">= 1",
            top_k=">= 1",
            val_anomalies_per_image=">= 1",
        )
        if any(c < 1 for c in self.decoder_channels):
            raise ValueError(f"decoder_channels must hold ints >= 1, got {self.decoder_channels!r}")

    @property
    def _stages(self) -> Tuple[int, ...]:
        """``strides`` sorted: finest first, the order the network takes its inputs in."""
        return tuple(sorted(self.strides))

    # ---- fit with seen defects -----------------------------------------------------------
    def fit(self, train_data: Any, progress: bool = True, seen: SeenLike = None) -> "PRN":
        """Learn from normal images plus ``seen`` annotated defects (Samples with masks, or a folder).

        The seen defects' file names are recorded in ``fit_info_["seen_anomalies"]``.
        """
        given = resolve_seen(seen)
        # A tiled model learns from the windows of each defect that hold defect pixels.
        self._seen = self.tile_samples(given) if self.tiling_ is not None else given
        try:
            super().fit(train_data, progress)
        finally:
            self._seen = []
        if self.tiling_ is not None and given:
            self.fit_info_["seen_anomalies"] = seen_file_names(given)
            self.fit_info_["seen_tiles"] = len(self.tile_samples(given))
        return self

    # ---- features ------------------------------------------------------------------------
    def _normalise(self, feats: Dict[int, torch.Tensor]) -> Dict[int, torch.Tensor]:
        return {s: (feats[s].to(self.device_) - self.feature_mean_[s]) / self.feature_std_[s] for s in self._stages}

    def _network_inputs(
        self, feats: Dict[int, torch.Tensor]
    ) -> Tuple[List[torch.Tensor], Optional[List[torch.Tensor]]]:
        """Raw stage features -> (normalised features, prototype residuals or None), finest first."""
        norm = self._normalise(feats)
        xs = [norm[s] for s in self._stages]
        if not self.use_prototypes:
            return xs, None
        return xs, [nearest_residuals(norm[s], self.prototypes_[s])[0] for s in self._stages]

    def _logits(self, feats: Dict[int, torch.Tensor]) -> torch.Tensor:
        """-> N x 1 x S x S logits at the output size."""
        xs, res = self._network_inputs(feats)
        size = self.preprocess.output_size
        return resize_bilinear(self.network_(xs, res), (size, size))

    def _score(self, feats: Dict[int, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        maps = probability(self._logits(feats))  # sigmoid, exact for tiny values in every engine
        return top_k_mean(maps, self.top_k), maps

    def map_image_scores(self, maps: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """PRN's image score (mean of the ``top_k`` largest map values) over valid pixels only."""
        flat = maps[:, 0].masked_fill(~valid, float("-inf")).flatten(1)
        k = max(1, min(self.top_k, int(valid.flatten(1).sum(1).min())))
        return flat.topk(k, dim=1).values.mean(1)

    def _predict_tensor(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        self.network_.eval()
        return self._score(self.feature_extractor(self._stages).run_backbone(images))

    def _build(self, channels: Sequence[int]) -> None:
        torch.manual_seed(self.seed)
        self.network_ = PRNNetwork(
            channels,
            self.use_prototypes,
            self.use_msa,
            self.use_mf,
            self.head_dim,
            self.msa_depth,
            self.decoder_channels,
        ).to(self.device_)

    # ---- training data -------------------------------------------------------------------
    def _seen_pairs(self) -> Tuple[List[Tuple[np.ndarray, np.ndarray]], Optional[FeaturePool], List[str]]:
        """Seen defects as (uint8 image, mask) pairs for EA, and their own features as a pool."""
        if not self._seen:
            return [], None, []
        images, _, _ = load_images(self._seen, self.preprocess, on_error="raise")
        masks = load_masks(self._seen, self.preprocess)[:, 0] > 0.5
        feats = self.feature_extractor(self._stages)([s.path for s in self._seen], desc="seen defects")
        pool = FeaturePool({s: f.half() for s, f in feats.items()}, masks)
        pairs = [(img, m.numpy()) for img, m in zip(to_uint8(images), masks)]
        return pairs, pool, seen_file_names(self._seen)

    def _make_pool(
        self, gens: AnomalyGenerators, normals: np.ndarray, extractor, kind: str, count: int, seed: int
    ) -> FeaturePool:
        images, masks = gens.make(kind, normals, count, seed)
        return FeaturePool(backbone_features(extractor, images, self.batch_size), torch.from_numpy(masks))

    def validation_anomalies(self, images: torch.Tensor) -> ValidationAnomalies:
        """The ``val_split`` anomalies made from held-out normal ``images`` (kinds PRN does not train on)."""

        def builtin() -> Tuple[torch.Tensor, torch.Tensor, str]:
            return (*builtin_anomalies(images, self.val_anomalies_per_image, seed=self.seed + 1), "builtin")

        return validation_anomalies(
            images, self.val_split, builtin, self.val_anomalies_per_image, seed=self.seed + 1, textures=self.textures
        )

    def _validation_set(self, val_paths: List[Path], extractor) -> Dict[str, Any]:
        """Held-out normals plus synthetic anomalies made from them."""
        normal = extractor(val_paths, desc="validation features")
        images, _, _ = load_images(val_paths, self.preprocess, on_error="raise")
        made = self.validation_anomalies(images)
        made.record(self.fit_info_)
        # float images in [0, 1] -> the uint8 images backbone_features reads (exact for the suite,
        # whose images are 8-bit already)
        anom = backbone_features(extractor, to_uint8(made.images), self.batch_size)
        s = self.preprocess.output_size
        return {
            "feats": {k: torch.cat([normal[k], anom[k].float()]) for k in self._stages},
            "labels": np.r_[np.zeros(len(val_paths), int), np.ones(len(made.images), int)],
            "masks": torch.cat([torch.zeros(len(val_paths), s, s, dtype=torch.bool), made.masks]).numpy(),
            "families": made.row_families(len(val_paths)),
        }

    @torch.no_grad()
    def _validate(self, val: Dict[str, Any], per_family: bool = False) -> Any:
        self.network_.eval()
        scores, maps = [], []
        n = len(val["labels"])
        for start in range(0, n, 16):
            sc, mp = self._score({k: f[start : start + 16] for k, f in val["feats"].items()})
            scores.append(sc.cpu())
            maps.append(subsample(mp[:, 0]).cpu())
        self.network_.train()
        rows = (val["labels"], torch.cat(scores).numpy(), subsample(val["masks"]), torch.cat(maps).numpy())
        if per_family:
            return family_scores(*rows, val["families"], VALIDATION_METRICS)
        return validation_scores(*rows, VALIDATION_METRICS)

    # ---- training ------------------------------------------------------------------------
    def _fit(self, paths: List[Path], progress: bool) -> None:
        t0 = time.perf_counter()
        train_idx, val_idx = self._hold_out(paths, self.val_fraction)
        train_paths = [paths[i] for i in train_idx]
        extractor = self.feature_extractor(self._stages)
        normal = extractor(train_paths)
        self.feature_mean_ = {s: f.mean((0, 2, 3), keepdim=True)[0].to(self.device_) for s, f in normal.items()}
        self.feature_std_ = {
            s: f.std((0, 2, 3), keepdim=True)[0].clamp_min(1e-6).to(self.device_) for s, f in normal.items()
        }
        t_proto = time.perf_counter()
        kmeans_info: Dict[int, int] = {}
        self.prototypes_ = {}
        if self.use_prototypes:
            normed = {s: v.cpu() for s, v in self._normalise(normal).items()}
            protos, kmeans_info = fit_prototypes(normed, self.prototype_ratio, self.seed, self.kmeans_iters)
            self.prototypes_ = {s: p.to(self.device_) for s, p in protos.items()}
            del normed
        proto_seconds = time.perf_counter() - t_proto
        val = self._validation_set([paths[i] for i in val_idx], extractor) if val_idx is not None else None

        seen_pairs, seen_pool, seen_names = self._seen_pairs()
        textures = resolve_textures(self.textures, required=False)
        gens = AnomalyGenerators(seen_pairs, textures, self.foreground, self.target_shapes)
        train_images, _, _ = load_images(train_paths, self.preprocess, on_error="raise")
        normals_u8 = to_uint8(train_images)
        del train_images
        mix = np.array(self.batch_mix, float)
        if gens.ea is None:  # no seen defects: EA's share goes to SA
            mix = np.array([mix[0], 0.0, mix[1] + mix[2]])
        counts = np.floor(self.train_batch_size * mix / mix.sum()).astype(int)
        counts[0] = self.train_batch_size - counts[1:].sum()
        counts = [int(c) for c in counts]
        n_ea_pool = self.pool_size // 2 if gens.ea is not None else 0

        self.fit_info_.update(
            feature_seconds=t_proto - t0,
            prototype_seconds=proto_seconds,
            kmeans_iterations={str(k): v for k, v in kmeans_info.items()},
            n_prototypes={str(s): int(p.shape[0]) for s, p in self.prototypes_.items()},
            train_images=len(train_paths),
            val_images=0 if val_idx is None else len(val_idx),
            val_anomalies=0 if val is None else int(np.sum(val["labels"])),
            val_image_names=[] if val_idx is None else [paths[i].name for i in val_idx],
            seen_anomalies=seen_names,
            sa_kinds=gens.sa_kinds,
            textures=str(textures) if textures else None,
            batch_counts={"normal": int(counts[0]), "ea": int(counts[1]), "sa": int(counts[2])},
        )
        self._train(normal, normals_u8, gens, seen_pool, extractor, counts, n_ea_pool, val, progress)

    def _train(self, normal, normals_u8, gens, seen_pool, extractor, counts, n_ea_pool, val, progress) -> None:
        self._build([normal[s].shape[1] for s in self._stages])
        opt = torch.optim.Adam(self.network_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        gen = torch.Generator().manual_seed(self.seed + 2)
        n_normal = normal[self._stages[0]].shape[0]
        steps = max(1, n_normal // counts[0])
        s = self.preprocess.output_size
        pools: Dict[str, Any] = {"ea": None, "sa": None}
        pool_seconds = [0.0]
        self.network_.train()

        def refresh_pools(epoch: int) -> None:
            tp = time.perf_counter()
            pool_seed = self.seed * 1000 + epoch
            pools["sa"] = self._make_pool(gens, normals_u8, extractor, "sa", self.pool_size - n_ea_pool, pool_seed)
            if n_ea_pool:
                ea_pool = self._make_pool(gens, normals_u8, extractor, "ea", n_ea_pool, pool_seed)
                pools["ea"] = FeaturePool.concat([ea_pool, seen_pool]) if seen_pool is not None else ea_pool
            pool_seconds[0] += time.perf_counter() - tp

        def run_epoch(epoch: int) -> Dict[str, float]:
            if pools["sa"] is None or (self.pool_refresh and (epoch - 1) % self.pool_refresh == 0):
                refresh_pools(epoch)
            perm = torch.randperm(n_normal, generator=gen)
            total = 0.0
            for step in range(steps):
                idx = perm[step * counts[0] : (step + 1) * counts[0]]
                parts = [({k: normal[k][idx] for k in self._stages}, torch.zeros(len(idx), s, s))]
                for pool, c in ((pools["ea"], counts[1]), (pools["sa"], counts[2])):
                    if c and pool is not None:
                        parts.append(pool.take(torch.randint(len(pool), (int(c),), generator=gen)))
                feats = {k: torch.cat([p[0][k] for p in parts]) for k in self._stages}
                target = torch.cat([p[1] for p in parts])[:, None].to(self.device_)
                loss = prn_loss(self._logits(feats), target, self.focal_weight, self.focal_alpha, self.focal_gamma)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
            return {"loss": total / steps}

        summary = train_epochs(
            run_epoch,
            None if val is None else (lambda: self._validate(val)),
            self._module_state,
            self.network_.load_state_dict,
            epochs=self.epochs,
            val_every=self.val_every,
            patience=self.patience,
            desc="prn",
            progress=progress,
        )
        if val is not None and val.get("families") is not None:  # the kept epoch, family by family
            self.fit_info_["val_families"] = self._validate(val, per_family=True)
        self.network_.eval()
        self.fit_info_.update(summary, pool_seconds=pool_seconds[0], steps_per_epoch=steps)

    # ---- state ---------------------------------------------------------------------------
    def _module_state(self) -> Dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.network_.state_dict().items()}

    def _get_state(self) -> Dict[str, Any]:
        return {
            "network": self._module_state(),
            "channels": [int(self.feature_mean_[s].shape[0]) for s in self._stages],
            "prototypes": {s: p.cpu().clone() for s, p in self.prototypes_.items()},
            "feature_mean": {s: m.cpu().clone() for s, m in self.feature_mean_.items()},
            "feature_std": {s: m.cpu().clone() for s, m in self.feature_std_.items()},
        }

    def _set_state(self, state: Dict[str, Any]) -> None:
        state = copy.copy(state)
        self._build(state["channels"])
        self.network_.load_state_dict(state["network"])
        self.network_.eval()
        self.prototypes_ = {s: p.to(self.device_) for s, p in state["prototypes"].items()}
        self.feature_mean_ = {s: m.to(self.device_) for s, m in state["feature_mean"].items()}
        self.feature_std_ = {s: m.to(self.device_) for s, m in state["feature_std"].items()}
