"""SimpleNet (Liu et al., CVPR 2023): adapted frozen features, Gaussian feature noise, a small discriminator.

A location's frozen feature ``o`` (stride-8 and stride-16 stages, 3x3 neighbourhood
average, concatenated on the stride-8 grid; the same patch features as PatchCore) is
projected by a bias-free linear adaptor ``q = G(o)``. Training draws anomalous features
``q- = q + eps``, eps ~ N(0, 0.015^2), and trains the discriminator ``D`` (Linear, BN,
LeakyReLU(0.2), Linear) with the truncated L1 loss to put ``D(q)`` above 0.5 and
``D(q-)`` below -0.5. At inference the score map is ``-D(G(o))``, upsampled to the input
size and Gaussian-blurred (sigma 4); the image score is its maximum.

Practical on a CPU without changing the method: the backbone is frozen, so features are
read from the feature cache once and training iterates over patch feature vectors
(an "epoch" is one shuffled pass over all training patch features). The number of
epochs and the weights kept are chosen on a validation split -- held-out normal training
images plus synthetic anomalies made from them -- never on test data (docs/protocol.md#validation-split).
See docs/methods/simplenet.md.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ...data.batches import load_images
from ...features import SeparableUpsampler, check_aggregation, fuse_stages
from ...synth.validation import VISIBLE_CHANGE, builtin_anomalies, library_anomalies
from ..base import AnomalyModel, patch_centres
from ..components.bounds import check_bounds, check_patch_size
from ..components.training import check_loop_params, train_epochs
from ..components.validation import family_scores, subsample, validation_scores
from ..components.validation_split import ValidationAnomalies, check_val_split, validation_anomalies
from ..registry import register_method
from .conv_head import ConvDiscriminator, ConvHead, adapt_maps
from .networks import (
    Adaptor,
    Discriminator,
    FusedHead,
    add_gaussian_noise,
    hidden_layers,
    init_weights,
    truncated_l1_loss,
)

IMAGE_SCORES = ("map_max", "patch_max")
HEADS = ("mlp", "conv")
FEATURE_NORMS = ("per_dim", "global")
_UPSAMPLER = SeparableUpsampler()  # upsample_maps as matrix products (shared cache of operators)


#: Training images whose backbone maps are held at once while the feature vectors are filled.
STREAM_IMAGES = 32


def chunked_mean_std(vectors: torch.Tensor, chunk: int = 65536) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-column mean and sample std (float64) of N x C ``vectors``, in two passes over row chunks.

    Equal to ``vectors.double().mean(0)`` / ``.std(0)`` without a float64 copy of every vector
    (twice the vectors' own size)."""
    n = vectors.shape[0]
    total = torch.zeros(vectors.shape[1], dtype=torch.float64)
    for part in vectors.split(chunk):
        total += part.double().sum(0)
    mean = total / n
    squares = torch.zeros_like(total)
    for part in vectors.split(chunk):
        squares += (part.double() - mean).pow(2).sum(0)
    return mean, (squares / max(n - 1, 1)).sqrt().clamp_min(1e-6)


@register_method
class SimpleNet(AnomalyModel):
    """SimpleNet with the paper's defaults; every hyper-parameter is a constructor argument.

    Method parameters (paper / official code defaults):
      ``strides`` (8, 16) and ``patch_size`` 3: the feature extractor;
      ``aggregation`` "adaptive" and ``embed_dim`` 128: the paper's f_agg, adaptive average
      pooling of each flattened C x 3 x 3 neighbourhood to ``embed_dim`` values per stage
      (the official code pools to 1536 for WideResNet-50; 128 per stage was chosen on
      validation for Lite0), or "mean" (per-channel 3x3 mean, C values per stage);
      ``stage_balance`` True: every stage weighs the same, as the official code's
      resampling of each stage to one channel count does (``features.stage_balance_weights``;
      a no-op with "adaptive", whose stages all have ``embed_dim`` values);
      ``noise_std`` 0.015: std of the Gaussian anomalous-feature noise; ``noise_levels`` 1:
      with K > 1 each feature vector's std is ``noise_std`` x 1.1^k, k uniform in 0..K-1
      (the official code's ``mix_noise``, whose MVTec runs use 1);
      ``feature_std`` 0.03 and ``feature_norm`` "global" (ours, see below): the frozen
      features are centred and multiplied by one factor so that their RMS per-dimension
      std is ``feature_std`` ("per_dim": every dimension gets that std; None: raw
      features, as in the paper). The noise is only meaningful relative to the feature
      scale: the paper's 0.015 was set for WideResNet-50 features, while EfficientNet-Lite0
      features have a per-dimension std near 4.5 and raw training stays on the
      D = 0 plateau (loss 1.0) for the whole run. The value was chosen on the validation
      split (docs/methods/simplenet.md); the centring and the factor fold into the first
      layer at inference;
      ``th_pos`` 0.5 / ``th_neg`` -0.5: truncation margins of the loss;
      ``disc_hidden`` None (= feature dim C), ``disc_layers`` 1 (hidden blocks; the official
      ``dsc_layers`` 2) and ``leaky_slope`` 0.2: the discriminator; ``head`` "mlp" (the paper's
      per-location MLP) or "conv" (ours: a 3x3 convolution over the adapted map as the first
      layer, trained on batches of whole maps; ``models.simplenet.conv_head``);
      ``adaptor_lr`` 1e-4, ``disc_lr`` 2e-4, ``weight_decay`` 1e-5: Adam;
      ``epochs`` 160: the most epochs trained (the paper's count);
      ``feature_batch_size`` 4096: feature vectors per step (the paper's 4 images of a
      32 x 32 grid at 256 px);
      ``blur_sigma`` 4 and ``image_score`` "map_max" (max of the blurred map; "patch_max"
      takes the max of the raw patch scores, as the official code does).
    Model selection (ours, docs/protocol.md#model-selection): ``val_fraction`` of the normal training images is
    held out (0 disables validation: train ``epochs``, keep the last) and anomalies are made
    from them by ``val_split`` (``models.components.validation_split``): "suite" (default) the
    shared ``synth.validation_suite``, ``val_anomalies_per_image`` per family (at least 24;
    ``val_textures`` the DTD folder of its texture family, None: the default one), with
    per-family metrics of the kept epoch in ``fit_info_["val_families"]``; "own"
    ``val_anomalies_per_image`` anomalies per image of ``val_kinds`` (``defectkit.synth``
    generators; ``("builtin",)`` uses ``synth.validation.builtin_anomalies``). Every ``val_every``
    epochs the model is scored on them, the best epoch's weights are kept, and training stops
    after ``patience`` validations without improvement (0: never stop early).

    Learned state: ``adaptor_``, ``discriminator_``, ``feature_mean_`` / ``feature_scale_``.
    """

    method = "simplenet"
    # files saved before the aggregation option existed used the 3x3 mean; files saved before
    # val_split existed chose their epoch on val_kinds ("own")
    legacy_params = {"aggregation": "mean", "val_split": "own"}

    def __init__(
        self,
        strides: Tuple[int, ...] = (8, 16),
        patch_size: int = 3,
        aggregation: str = "adaptive",
        embed_dim: int = 128,
        stage_balance: bool = True,
        feature_std: Optional[float] = 0.03,
        feature_norm: str = "global",
        noise_std: float = 0.015,
        noise_levels: int = 1,
        th_pos: float = 0.5,
        th_neg: float = -0.5,
        disc_hidden: Optional[int] = None,
        disc_layers: int = 1,
        head: str = "mlp",
        leaky_slope: float = 0.2,
        adaptor_lr: float = 1e-4,
        disc_lr: float = 2e-4,
        weight_decay: float = 1e-5,
        epochs: int = 160,
        feature_batch_size: int = 4096,
        val_fraction: float = 0.15,
        val_anomalies_per_image: int = 2,
        val_kinds: Tuple[str, ...] = ("hoa", "cutpaste", "cutpaste_scar"),
        val_split: str = "suite",
        val_textures: Optional[str] = None,
        val_every: int = 1,
        patience: int = 20,
        blur_sigma: float = 4.0,
        image_score: str = "map_max",
        **base: Any,
    ):
        super().__init__(**base)
        self.strides = strides
        self.patch_size = patch_size
        self.aggregation = aggregation
        self.embed_dim = embed_dim
        self.stage_balance = stage_balance
        self.feature_std = feature_std
        self.feature_norm = feature_norm
        self.noise_std = noise_std
        self.noise_levels = noise_levels
        self.th_pos = th_pos
        self.th_neg = th_neg
        self.disc_hidden = disc_hidden
        self.disc_layers = disc_layers
        self.head = head
        self.leaky_slope = leaky_slope
        self.adaptor_lr = adaptor_lr
        self.disc_lr = disc_lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.feature_batch_size = feature_batch_size
        self.val_fraction = val_fraction
        self.val_anomalies_per_image = val_anomalies_per_image
        self.val_kinds = val_kinds
        self.val_split = val_split
        self.val_textures = val_textures
        self.val_every = val_every
        self.patience = patience
        self.blur_sigma = blur_sigma
        self.image_score = image_score

    def check_params(self) -> None:
        super().check_params()
        if self.feature_norm not in FEATURE_NORMS:
            raise ValueError(f"feature_norm must be one of {FEATURE_NORMS}, got {self.feature_norm!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.head == "conv" and self.disc_layers != 1:
            raise ValueError("head='conv' has one hidden layer; disc_layers must be 1")
        if self.image_score not in IMAGE_SCORES:
            raise ValueError(f"image_score must be one of {IMAGE_SCORES}, got {self.image_score!r}")
        check_loop_params(self)
        check_val_split(self.val_split)
        if self.feature_batch_size < 2:
            raise ValueError(f"feature_batch_size must be >= 2, got {self.feature_batch_size}")
        check_aggregation(self.aggregation, self.embed_dim)
        check_patch_size(self.patch_size)
        check_bounds(
            self,
            feature_std="> 0",
            noise_std="> 0",
            noise_levels=">= 1",
            disc_hidden=">= 1",
            disc_layers=">= 1",
            leaky_slope=">= 0",
            adaptor_lr="> 0",
            disc_lr="> 0",
            weight_decay=">= 0",
            val_anomalies_per_image=">= 1",
            blur_sigma=">= 0",
        )
        if not self.th_neg < self.th_pos:
            raise ValueError(f"th_neg must be below th_pos, got th_neg={self.th_neg!r}, th_pos={self.th_pos!r}")

    @property
    def _val_kinds(self) -> Tuple[str, ...]:
        return tuple([self.val_kinds] if isinstance(self.val_kinds, str) else self.val_kinds)

    # ---- features ------------------------------------------------------------------------
    def patch_features(self, stage_features: Dict[int, torch.Tensor]) -> torch.Tensor:
        """{stride: N x C_s x h_s x w_s} -> N x C x h x w local features o (paper eq. 1-3)."""
        return fuse_stages(
            stage_features, self.strides, self.patch_size, self.stage_balance, self.aggregation, self.embed_dim
        )

    def _build(self, dim: int, generator: Optional[torch.Generator] = None) -> None:
        hidden = self.disc_hidden or dim
        self.adaptor_ = Adaptor(dim)
        if self.head == "conv":
            self.discriminator_: Any = ConvDiscriminator(dim, hidden, self.leaky_slope)
        else:
            self.discriminator_ = Discriminator(dim, hidden, self.leaky_slope, self.disc_layers)
        if generator is not None:
            init_weights(self.adaptor_, generator)
            init_weights(self.discriminator_, generator)
        self.adaptor_.to(self.device_)
        self.discriminator_.to(self.device_)
        self.__dict__.pop("_head", None)

    # ---- scoring -------------------------------------------------------------------------
    def _score_features(self, feats: torch.Tensor, head: Any, valid=None) -> Tuple[torch.Tensor, torch.Tensor]:
        """N x C x h x w local features -> (N image scores, N x 1 x S x S smoothed maps).
        With ``valid`` (N x S x S bool) the image score is taken over real pixels only."""
        patch = head(feats)
        maps = _UPSAMPLER(patch, self.preprocess.output_size, self.blur_sigma)
        if self.image_score == "patch_max":
            flat = patch.flatten(1)
            if valid is not None:
                flat = flat.masked_fill(~patch_centres(valid, patch.shape[-2], patch.shape[-1]), float("-inf"))
            scores = flat.amax(dim=1)
        elif valid is not None:
            scores = self.map_image_scores(maps, valid)
        else:
            scores = maps.flatten(1).amax(dim=1)
        return scores, maps

    def _fused_head(self) -> Any:
        if self.head == "conv":
            disc = copy.deepcopy(self.discriminator_)
            return ConvHead(self.adaptor_, disc, self.feature_mean_, self.feature_scale_).to(self.device_)
        return FusedHead(self.adaptor_, self.discriminator_, self.feature_mean_, self.feature_scale_).to(self.device_)

    @property
    def head_(self) -> Any:
        """Adaptor, discriminator and standardisation folded into one head (built on first use)."""
        head = self.__dict__.get("_head")
        if head is None:
            self.adaptor_.eval()
            self.discriminator_.eval()
            head = self.__dict__["_head"] = self._fused_head()
        return head

    def _predict_tensor(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        feats = self.patch_features(self.feature_extractor(self.strides).run_backbone(images))
        return self._score_features(feats, self.head_)

    def _predict_valid(self, images: torch.Tensor, valid: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        feats = self.patch_features(self.feature_extractor(self.strides).run_backbone(images))
        return self._score_features(feats, self.head_, valid)

    # ---- training ------------------------------------------------------------------------
    def _validation_set(self, val_paths: List[Path], extractor) -> Dict[str, Any]:
        """Held-out normals and synthetic anomalies made from them: features, labels, masks.

        The features of all of them are written into one preallocated tensor (normals chunk
        by chunk, anomalies batch by batch) and the images are dropped as soon as the
        anomalies are made, so the set costs its features once, not also a concatenated
        copy of them, while the training vectors are not yet allocated (``_fit`` builds
        this first)."""
        images, _, _ = load_images(val_paths, self.preprocess, on_error="raise")
        made = self.validation_anomalies(images)
        made.record(self.fit_info_)
        del images
        anomalies, anomaly_masks = made.images, made.masks
        n_normal, n_total = len(val_paths), len(val_paths) + len(anomalies)
        families = made.row_families(n_normal)
        del made
        feats: Optional[torch.Tensor] = None

        def write(row: int, part: torch.Tensor) -> None:
            nonlocal feats
            if feats is None:
                feats = torch.empty((n_total,) + tuple(part.shape[1:]), dtype=part.dtype)
            feats[row : row + len(part)] = part

        for indices, stage in extractor.stream(val_paths, STREAM_IMAGES, desc="validation features"):
            write(indices[0], self.patch_features(stage))
        for start in range(0, len(anomalies), self.batch_size):
            stage = extractor.run_backbone(anomalies[start : start + self.batch_size])
            write(n_normal + start, self.patch_features({s: f.cpu() for s, f in stage.items()}))
        del anomalies
        assert feats is not None
        s = self.preprocess.output_size
        masks = torch.cat([torch.zeros(n_normal, s, s, dtype=torch.bool), anomaly_masks])
        return {
            "feats": feats.to(self.device_),
            "labels": np.r_[np.zeros(n_normal, int), np.ones(n_total - n_normal, int)],
            "masks": masks.numpy(),
            "families": families,
        }

    def validation_anomalies(self, images: torch.Tensor) -> ValidationAnomalies:
        """The ``val_split`` anomalies made from held-out normal ``images`` (the suite, or :meth:`_own_anomalies`)."""
        return validation_anomalies(
            images,
            self.val_split,
            lambda: self._own_anomalies(images),
            self.val_anomalies_per_image,
            seed=self.seed + 1,
            textures=self.val_textures,
        )

    def _own_anomalies(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, str]:
        """``val_anomalies_per_image`` synthetic anomalies per held-out image -> (images, bool masks, source).

        ``val_kinds`` are generators of the synthesis library (``synth.validation.library_anomalies``);
        ``("builtin",)`` uses ``synth.validation.builtin_anomalies``. Either way the mask keeps
        only visibly changed pixels: background pasted on background is no defect.
        """
        if self._val_kinds == ("builtin",):
            out, masks = builtin_anomalies(
                images, self.val_anomalies_per_image, seed=self.seed + 1, change_threshold=VISIBLE_CHANGE
            )
            return out, masks, "builtin"
        return library_anomalies(images, self.val_anomalies_per_image, self._val_kinds, self.seed + 1)

    @torch.no_grad()
    def _validate(self, val: Dict[str, Any], per_family: bool = False) -> Any:
        self.discriminator_.eval()
        head = self._fused_head()
        scores, maps = [], []
        for start in range(0, len(val["feats"]), 32):
            sc, mp = self._score_features(val["feats"][start : start + 32], head)
            scores.append(sc.cpu())
            maps.append(subsample(mp[:, 0]).cpu())
        self.discriminator_.train()
        rows = (val["labels"], torch.cat(scores).numpy(), subsample(val["masks"]), torch.cat(maps).numpy())
        return family_scores(*rows, val["families"]) if per_family else validation_scores(*rows)

    def _fit(self, paths: List[Path], progress: bool) -> None:
        t0 = time.perf_counter()
        train_idx, val_idx = self._hold_out(paths, self.val_fraction)
        extractor = self.feature_extractor(self.strides)
        # validation first: its transient images are gone before the training vectors exist
        val = self._validation_set([paths[i] for i in val_idx], extractor) if val_idx is not None else None
        vectors = self.feature_vectors(extractor, [paths[i] for i in train_idx])
        self.fit_info_.update(
            feature_seconds=time.perf_counter() - t0,
            train_images=int(len(train_idx)),
            val_images=0 if val_idx is None else int(len(val_idx)),
            val_image_names=[] if val_idx is None else [paths[i].name for i in val_idx],
        )
        self.train_on_vectors(vectors, val, progress)

    def feature_vectors(self, extractor, paths: List[Path]) -> torch.Tensor:
        """The local feature vectors of ``paths`` (N*h*w x C, image-major), filled chunk by chunk.

        The raw backbone maps of one chunk are held at a time, and the vectors are written
        into one preallocated tensor, so training holds the vectors once, not also every
        image's backbone maps and a fused copy."""
        vectors: Optional[torch.Tensor] = None
        row = 0
        for _indices, stage_features in extractor.stream(paths, STREAM_IMAGES):
            feats = self.patch_features(stage_features).permute(0, 2, 3, 1)
            part = feats.reshape(-1, feats.shape[-1])
            if vectors is None:
                vectors = torch.empty(len(paths) * feats.shape[1] * feats.shape[2], part.shape[1])
            vectors[row : row + len(part)] = part
            row += len(part)
        if vectors is None or row != len(vectors):
            raise ValueError("training images give patch grids of different sizes; SimpleNet needs one input size")
        return vectors

    def train_on_features(
        self, feats: torch.Tensor, val: Optional[Dict[str, Any]] = None, progress: bool = False
    ) -> "SimpleNet":
        """Train adaptor and discriminator on frozen local features ``feats`` (N x C x h x w).

        ``val`` (optional): ``{"feats": M x C x h x w, "labels": M, "masks": M x S x S}`` --
        the validation images' features, 0/1 labels and pixel masks at the output size. With it, the
        weights of the best validation are kept and training stops after ``patience``
        validations without improvement; without it the last epoch's weights are kept.
        """
        dim = feats.shape[1]
        # a copy: train_on_vectors standardises its input in place
        vectors = feats.permute(0, 2, 3, 1).reshape(-1, dim).clone()
        return self.train_on_vectors(vectors, val, progress, grid=(feats.shape[2], feats.shape[3]))

    def train_on_vectors(
        self,
        vectors: torch.Tensor,
        val: Optional[Dict[str, Any]] = None,
        progress: bool = False,
        grid: Optional[Tuple[int, int]] = None,
    ) -> "SimpleNet":
        """:meth:`train_on_features` on the vectors (N*h*w x C, image-major) themselves, which are
        standardised in place (``fit`` passes the tensor it filled; no copy is made on the CPU).
        ``grid`` (h, w) is only used by ``head="conv"``; None: the stride-``min(strides)`` grid of
        the input size."""
        info = self._fit_info()
        dim = vectors.shape[1]
        if self.feature_std is not None:
            mean, std = chunked_mean_std(vectors)
            if self.feature_norm == "global":  # one factor for all dimensions: the geometry is kept
                std = torch.full_like(std, float(std.pow(2).mean().sqrt()))
            self.feature_mean_, self.feature_scale_ = mean.float(), (self.feature_std / std).float()
            vectors.sub_(self.feature_mean_).mul_(self.feature_scale_)
        else:
            self.feature_mean_ = self.feature_scale_ = None
        device = self.device_
        vectors = vectors.to(device)
        if val is not None:
            val = dict(val, feats=val["feats"].to(device))

        self._build(dim, torch.Generator().manual_seed(self.seed))
        gen = torch.Generator(device=device).manual_seed(self.seed + 2)
        adaptor_opt = torch.optim.Adam(self.adaptor_.parameters(), lr=self.adaptor_lr, weight_decay=self.weight_decay)
        disc_opt = torch.optim.Adam(self.discriminator_.parameters(), lr=self.disc_lr, weight_decay=self.weight_decay)
        self.adaptor_.train()
        self.discriminator_.train()

        n_vec = vectors.shape[0]
        if self.head == "conv":  # batches of whole maps: the convolution needs real neighbourhoods
            maps = self._as_maps(vectors, grid)
            items, per_item = len(maps), maps.shape[1] * maps.shape[2]
        else:
            items, per_item = n_vec, 1
        bs = min(max(1, self.feature_batch_size // per_item), items)
        steps = max(1, items // bs)  # the shuffled remainder (< one batch) is dropped each epoch

        def discriminate(batch: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
            """D on the adapted batch and on its noised copy, in one pass (one set of BN statistics)."""
            if self.head == "conv":
                q = adapt_maps(self.adaptor_, maps[batch])
            else:
                q = self.adaptor_(vectors[batch])
            q_fake = add_gaussian_noise(q, self.noise_std, gen, self.noise_levels)
            d = self.discriminator_(torch.cat([q, q_fake]))
            return d[: len(q)], d[len(q) :]

        def run_epoch(epoch: int) -> Dict[str, float]:
            perm = torch.randperm(items, generator=gen, device=device)
            total = torch.zeros((), device=device)
            for step in range(steps):
                d_normal, d_fake = discriminate(perm[step * bs : (step + 1) * bs])
                loss = truncated_l1_loss(d_normal, d_fake, self.th_pos, self.th_neg)
                adaptor_opt.zero_grad(set_to_none=True)
                disc_opt.zero_grad(set_to_none=True)
                loss.backward()
                adaptor_opt.step()
                disc_opt.step()
                total += loss.detach()
            return {"loss": float(total) / steps}

        summary = train_epochs(
            run_epoch,
            None if val is None else (lambda: self._validate(val)),
            self._module_state,
            self._load_module_state,
            epochs=self.epochs,
            val_every=self.val_every,
            patience=self.patience,
            desc="simplenet",
            progress=progress,
        )
        if val is not None and val.get("families") is not None:  # the kept epoch, family by family
            info["val_families"] = self._validate(val, per_family=True)
        self.adaptor_.eval()
        self.discriminator_.eval()
        self.__dict__.pop("_head", None)
        self._fitted = True
        info.update(
            summary,
            steps_per_epoch=steps,
            feature_dim=dim,
            train_vectors=int(n_vec),
            val_anomalies=0 if val is None else int(np.sum(val["labels"])),
        )
        return self

    def _as_maps(self, vectors: torch.Tensor, grid: Optional[Tuple[int, int]]) -> torch.Tensor:
        """Image-major N*h*w x C vectors as an N x h x w x C view (no copy)."""
        if grid is None:
            side = -(-self.preprocess.output_size // min(self.strides))
            grid = (side, side)
        h, w = grid
        if vectors.shape[0] % (h * w):
            raise ValueError(f"{vectors.shape[0]} vectors are not whole {h} x {w} maps; pass grid=")
        return vectors.view(-1, h, w, vectors.shape[1])

    # ---- state ---------------------------------------------------------------------------
    def _module_state(self) -> Dict[str, Any]:
        return {
            "adaptor": {k: v.detach().cpu().clone() for k, v in self.adaptor_.state_dict().items()},
            "discriminator": {k: v.detach().cpu().clone() for k, v in self.discriminator_.state_dict().items()},
        }

    def _load_module_state(self, state: Dict[str, Any]) -> None:
        self.adaptor_.load_state_dict(state["adaptor"])
        self.discriminator_.load_state_dict(state["discriminator"])
        self.__dict__.pop("_head", None)

    def _get_state(self) -> Dict[str, Any]:
        state = copy.deepcopy(self._module_state())
        if self.feature_scale_ is not None:
            state["feature_mean"] = self.feature_mean_.cpu().clone()
            state["feature_scale"] = self.feature_scale_.cpu().clone()
        return state

    def _set_state(self, state: Dict[str, Any]) -> None:
        disc_state = state["discriminator"]
        device = self.device_
        if "conv1.weight" in disc_state:
            hidden, dim = disc_state["conv1.weight"].shape[:2]
            self.discriminator_ = ConvDiscriminator(dim, hidden, self.leaky_slope).to(device)
        else:
            hidden, dim = disc_state["fc1.weight"].shape
            layers = hidden_layers(disc_state)
            self.discriminator_ = Discriminator(dim, hidden, self.leaky_slope, layers).to(device)
        self.adaptor_ = Adaptor(dim).to(device)
        self.feature_mean_ = state.get("feature_mean")
        self.feature_scale_ = state.get("feature_scale")
        self._load_module_state(state)
        self.adaptor_.eval()
        self.discriminator_.eval()
