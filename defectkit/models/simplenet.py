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
images plus synthetic anomalies made from them -- never on test data (PROTOCOL.md).
See docs/methods/simplenet.md.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.batches import load_images
from ..features import check_aggregation, fuse_stages
from ..metrics import aupro, image_auroc, pixel_auroc
from .base import AnomalyModel, register_method
from .selection import BestEpoch
from .simplenet_parts import (
    Adaptor,
    Discriminator,
    FusedHead,
    SeparableUpsampler,
    add_gaussian_noise,
    synthetic_validation_anomalies,
    init_weights,
    split_validation,
    truncated_l1_loss,
)

IMAGE_SCORES = ("map_max", "patch_max")
FEATURE_NORMS = ("per_dim", "global")
_UPSAMPLER = SeparableUpsampler()  # upsample_maps as matrix products (shared cache of operators)
#: validation pixel AUROC reads every 2nd pixel per axis: maps are blurred (sigma 4 px), and
#: a quarter of the pixels makes the per-epoch validation 4x cheaper.
_VAL_PIXEL_STRIDE = 2
#: a validation anomaly's mask keeps the pixels that changed by more than this (in [0, 1] units)
_VAL_CHANGE = 0.05


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
      ``noise_std`` 0.015: std of the Gaussian anomalous-feature noise;
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
      ``disc_hidden`` None (= feature dim C) and ``leaky_slope`` 0.2: the discriminator;
      ``adaptor_lr`` 1e-4, ``disc_lr`` 2e-4, ``weight_decay`` 1e-5: Adam;
      ``epochs`` 160: the most epochs trained (the paper's count);
      ``feature_batch_size`` 4096: feature vectors per step (the paper's 4 images of a
      32 x 32 grid at 256 px);
      ``blur_sigma`` 4 and ``image_score`` "map_max" (max of the blurred map; "patch_max"
      takes the max of the raw patch scores, as the official code does).
    Model selection (ours, PROTOCOL.md): ``val_fraction`` of the normal training images is
    held out (0 disables validation: train ``epochs``, keep the last), each gets
    ``val_anomalies_per_image`` synthetic anomalies of ``val_kinds`` (``defectkit.synth``
    generators; ``("builtin",)`` uses the self-contained one in ``simplenet_parts``); every ``val_every`` epochs the model
    is scored on them, the best epoch's weights are kept, and training stops after
    ``patience`` epochs without improvement (0: never stop early).
    """

    method = "simplenet"
    # files saved before the aggregation option existed used the 3x3 mean
    legacy_params = {"aggregation": "mean"}

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
        strides: Tuple[int, ...] = (8, 16),
        patch_size: int = 3,
        aggregation: str = "adaptive",
        embed_dim: int = 128,
        stage_balance: bool = True,
        feature_std: Optional[float] = 0.03,
        feature_norm: str = "global",
        noise_std: float = 0.015,
        th_pos: float = 0.5,
        th_neg: float = -0.5,
        disc_hidden: Optional[int] = None,
        leaky_slope: float = 0.2,
        adaptor_lr: float = 1e-4,
        disc_lr: float = 2e-4,
        weight_decay: float = 1e-5,
        epochs: int = 160,
        feature_batch_size: int = 4096,
        val_fraction: float = 0.15,
        val_anomalies_per_image: int = 2,
        val_kinds: Tuple[str, ...] = ("hoa", "cutpaste", "cutpaste_scar"),
        val_every: int = 1,
        patience: int = 20,
        blur_sigma: float = 4.0,
        image_score: str = "map_max",
    ):
        super().__init__(backbone, weights, image_size, crop_size, device, seed, batch_size, cache_dir, use_cache)
        if feature_norm not in FEATURE_NORMS:
            raise ValueError(f"feature_norm must be one of {FEATURE_NORMS}, got {feature_norm!r}")
        if image_score not in IMAGE_SCORES:
            raise ValueError(f"image_score must be one of {IMAGE_SCORES}, got {image_score!r}")
        if epochs < 1 or feature_batch_size < 2 or val_every < 1:
            raise ValueError("epochs and val_every must be >= 1 and feature_batch_size >= 2")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.strides = tuple(strides)
        check_aggregation(aggregation, embed_dim)
        self.patch_size = patch_size
        self.aggregation = aggregation
        self.embed_dim = embed_dim
        self.stage_balance = stage_balance
        self.feature_std = feature_std
        self.feature_norm = feature_norm
        self.noise_std = noise_std
        self.th_pos = th_pos
        self.th_neg = th_neg
        self.disc_hidden = disc_hidden
        self.leaky_slope = leaky_slope
        self.adaptor_lr = adaptor_lr
        self.disc_lr = disc_lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.feature_batch_size = feature_batch_size
        self.val_fraction = val_fraction
        self.val_anomalies_per_image = val_anomalies_per_image
        self.val_kinds = tuple([val_kinds] if isinstance(val_kinds, str) else val_kinds)
        self.val_every = val_every
        self.patience = patience
        self.blur_sigma = blur_sigma
        self.image_score = image_score
        self.adaptor: Optional[Adaptor] = None
        self.discriminator: Optional[Discriminator] = None
        self.feature_mean: Optional[torch.Tensor] = None
        self.feature_scale: Optional[torch.Tensor] = None
        self._head: Optional[FusedHead] = None

    # ---- features ------------------------------------------------------------------------
    def patch_features(self, stage_features: Dict[int, torch.Tensor]) -> torch.Tensor:
        """{stride: N x C_s x h_s x w_s} -> N x C x h x w local features o (paper eq. 1-3)."""
        return fuse_stages(
            stage_features, self.strides, self.patch_size, self.stage_balance, self.aggregation, self.embed_dim
        )

    def _build(self, dim: int, generator: Optional[torch.Generator] = None) -> None:
        hidden = self.disc_hidden or dim
        self.adaptor = Adaptor(dim)
        self.discriminator = Discriminator(dim, hidden, self.leaky_slope)
        if generator is not None:
            init_weights(self.adaptor, generator)
            init_weights(self.discriminator, generator)
        self.adaptor.to(self.device)
        self.discriminator.to(self.device)
        self._head = None

    # ---- scoring -------------------------------------------------------------------------
    def _score_features(self, feats: torch.Tensor, head: FusedHead) -> Tuple[torch.Tensor, torch.Tensor]:
        """N x C x h x w local features -> (N image scores, N x 1 x S x S smoothed maps)."""
        patch = head(feats)
        maps = _UPSAMPLER(patch, self.preprocess.output_size, self.blur_sigma)
        if self.image_score == "patch_max":
            scores = patch.flatten(1).amax(dim=1)
        else:
            scores = maps.flatten(1).amax(dim=1)
        return scores, maps

    def _fused_head(self) -> FusedHead:
        return FusedHead(self.adaptor, self.discriminator, self.feature_mean, self.feature_scale).to(self.device)

    @property
    def head(self) -> FusedHead:
        if self._head is None:
            self.adaptor.eval()
            self.discriminator.eval()
            self._head = self._fused_head()
        return self._head

    def _predict_tensor(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        feats = self.patch_features(self.feature_extractor(self.strides).run_backbone(images))
        return self._score_features(feats, self.head)

    # ---- training ------------------------------------------------------------------------
    def _validation_set(self, val_paths: List[Path], extractor) -> Dict[str, Any]:
        """Held-out normals and synthetic anomalies made from them: features, labels, masks."""
        normal_feats = self.patch_features(extractor(val_paths, desc="validation features"))
        images, _, _ = load_images(val_paths, self.preprocess, on_error="raise")
        anomalies, anomaly_masks, self.fit_info_["val_synthesis"] = self._validation_anomalies(images)
        anomaly_feats = []
        for start in range(0, len(anomalies), self.batch_size):
            stage = extractor.run_backbone(anomalies[start : start + self.batch_size])
            anomaly_feats.append(self.patch_features({s: f.cpu() for s, f in stage.items()}))
        s = self.preprocess.output_size
        masks = torch.cat([torch.zeros(len(normal_feats), s, s, dtype=torch.bool), anomaly_masks])
        return {
            "feats": torch.cat([normal_feats] + anomaly_feats).to(self.device),
            "labels": np.r_[np.zeros(len(normal_feats), int), np.ones(len(anomalies), int)],
            "masks": masks.numpy(),
        }

    def _validation_anomalies(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, str]:
        """``val_anomalies_per_image`` synthetic anomalies per held-out image -> (images, bool masks, source).

        ``val_kinds`` are generators of the project's synthesis library (``defectkit.synth``);
        without it (or with ``val_kinds=("builtin",)``) the self-contained generator in
        ``simplenet_parts`` is used. Either way the mask keeps only visibly changed pixels
        (> ``_VAL_CHANGE`` in some channel): background pasted on background is no defect.
        """
        make_generator = None
        if tuple(self.val_kinds) != ("builtin",):
            try:
                from ..synth import make_generator
            except ImportError:  # pragma: no cover - the synthesis library is optional here
                make_generator = None
        if make_generator is None:
            out, masks = synthetic_validation_anomalies(
                images, self.val_anomalies_per_image, seed=self.seed + 1, change_threshold=_VAL_CHANGE
            )
            return out, masks, "builtin"
        kinds = list(self.val_kinds)
        gen = make_generator(kinds if len(kinds) > 1 else kinds[0])
        rng = np.random.default_rng(self.seed + 1)
        out, masks = [], []
        for i in np.repeat(np.arange(len(images)), self.val_anomalies_per_image):
            normal = (images[i].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
            for _attempt in range(20):  # redraw anomalies that changed (almost) nothing visibly
                res = gen(normal, rng)
                anomalous = np.asarray(res.image, dtype=np.float32) / 255.0
                change = np.abs(anomalous - normal.astype(np.float32) / 255.0).max(axis=2)
                mask = (np.asarray(res.mask) > 0.5) & (change > _VAL_CHANGE)
                if mask.sum() >= max(4, int(0.001 * mask.size)):
                    break
            else:
                continue
            out.append(torch.from_numpy(np.ascontiguousarray(anomalous)).permute(2, 0, 1))
            masks.append(torch.from_numpy(mask))
        if not out:
            raise RuntimeError(f"the validation generators {kinds} produced no visible anomaly")
        return torch.stack(out), torch.stack(masks), "defectkit.synth:" + "+".join(kinds)

    @torch.no_grad()
    def _validate(self, val: Dict[str, Any]) -> Dict[str, float]:
        self.discriminator.eval()
        head = self._fused_head()
        scores, maps = [], []
        for start in range(0, len(val["feats"]), 32):
            sc, mp = self._score_features(val["feats"][start : start + 32], head)
            scores.append(sc.cpu())
            maps.append(mp[:, 0, ::_VAL_PIXEL_STRIDE, ::_VAL_PIXEL_STRIDE].cpu())
        self.discriminator.train()
        i_auroc = image_auroc(val["labels"], torch.cat(scores).numpy())
        masks = val["masks"][:, ::_VAL_PIXEL_STRIDE, ::_VAL_PIXEL_STRIDE]
        maps = torch.cat(maps).numpy()
        p_auroc = pixel_auroc(masks, maps)
        pro = aupro(masks, maps)
        return {"image_auroc": i_auroc, "pixel_auroc": p_auroc, "aupro": pro, "score": (i_auroc + p_auroc + pro) / 3}

    def _fit(self, paths: List[Path], progress: bool) -> None:
        t0 = time.perf_counter()
        train_idx, val_idx = split_validation(len(paths), self.val_fraction, self.seed)
        extractor = self.feature_extractor(self.strides)
        feats = self.patch_features(extractor([paths[i] for i in train_idx]))
        val = self._validation_set([paths[i] for i in val_idx], extractor) if val_idx is not None else None
        self.fit_info_.update(
            feature_seconds=time.perf_counter() - t0,
            train_images=int(len(train_idx)),
            val_images=0 if val_idx is None else int(len(val_idx)),
            val_image_names=[] if val_idx is None else [paths[i].name for i in val_idx],
        )
        self.train_on_features(feats, val, progress)

    def train_on_features(
        self, feats: torch.Tensor, val: Optional[Dict[str, Any]] = None, progress: bool = False
    ) -> "SimpleNet":
        """Train adaptor and discriminator on frozen local features ``feats`` (N x C x h x w).

        ``val`` (optional): ``{"feats": M x C x h x w, "labels": M, "masks": M x S x S}`` --
        the validation images' features, 0/1 labels and pixel masks at the output size.
        With it, the weights of the epoch with the best validation score are kept and
        training stops after ``patience`` epochs without improvement; without it the
        last epoch's weights are kept. This is what ``fit`` runs after feature extraction.
        """
        t1 = time.perf_counter()
        dim = feats.shape[1]
        vectors = feats.permute(0, 2, 3, 1).reshape(-1, dim).contiguous()
        if self.feature_std is not None:
            mean, std = vectors.double().mean(0), vectors.double().std(0).clamp_min(1e-6)
            if self.feature_norm == "global":  # one factor for all dimensions: the geometry is kept
                std = torch.full_like(std, float(std.pow(2).mean().sqrt()))
            self.feature_mean, self.feature_scale = mean.float(), (self.feature_std / std).float()
            vectors = (vectors - self.feature_mean) * self.feature_scale
        else:
            self.feature_mean = self.feature_scale = None
        vectors = vectors.to(self.device)
        if val is not None:
            val = dict(val, feats=val["feats"].to(self.device))

        self._build(dim, torch.Generator().manual_seed(self.seed))
        gen = torch.Generator(device=self.device).manual_seed(self.seed + 2)
        adaptor_opt = torch.optim.Adam(self.adaptor.parameters(), lr=self.adaptor_lr, weight_decay=self.weight_decay)
        disc_opt = torch.optim.Adam(self.discriminator.parameters(), lr=self.disc_lr, weight_decay=self.weight_decay)
        self.adaptor.train()
        self.discriminator.train()

        n_vec = vectors.shape[0]
        bs = min(self.feature_batch_size, n_vec)
        steps = max(1, n_vec // bs)  # the shuffled remainder (< one batch) is dropped each epoch
        best = BestEpoch(self.patience)
        losses: List[float] = []
        val_curve: List[Dict[str, float]] = []
        stopped_early = False
        val_seconds = 0.0
        bar = tqdm(range(1, self.epochs + 1), desc="simplenet", unit="epoch", disable=not progress, leave=False)
        for epoch in bar:
            perm = torch.randperm(n_vec, generator=gen, device=self.device)
            total = torch.zeros((), device=self.device)
            for step in range(steps):
                o = vectors[perm[step * bs : (step + 1) * bs]]
                q = self.adaptor(o)
                q_fake = add_gaussian_noise(q, self.noise_std, gen)
                d = self.discriminator(torch.cat([q, q_fake]))
                loss = truncated_l1_loss(d[: len(q)], d[len(q) :], self.th_pos, self.th_neg)
                adaptor_opt.zero_grad(set_to_none=True)
                disc_opt.zero_grad(set_to_none=True)
                loss.backward()
                adaptor_opt.step()
                disc_opt.step()
                total += loss.detach()
            losses.append(float(total) / steps)
            if val is not None and (epoch % self.val_every == 0 or epoch == self.epochs):
                tv = time.perf_counter()
                metrics = self._validate(val)
                val_seconds += time.perf_counter() - tv
                val_curve.append({"epoch": epoch, "loss": losses[-1], **metrics})
                best.update(epoch, metrics, self._module_state)
                bar.set_postfix(loss=f"{losses[-1]:.4f}", val=f"{metrics['score']:.4f}", best=best.epoch)
                if best.should_stop(epoch):
                    stopped_early = True
                    break
            else:
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
        bar.close()

        chosen, selection = best.restore(self._load_module_state, len(losses))
        self.adaptor.eval()
        self.discriminator.eval()
        self._head = None
        self.fitted_ = True
        self.fit_info_.update(
            train_loop_seconds=time.perf_counter() - t1,
            validation_seconds=val_seconds,
            epochs_run=len(losses),
            chosen_epoch=chosen,
            epochs=chosen,
            selection=selection,
            stopped_early=stopped_early,
            steps_per_epoch=steps,
            feature_dim=dim,
            train_vectors=int(n_vec),
            val_anomalies=0 if val is None else int(np.sum(val["labels"])),
            loss_curve=losses,
            val_curve=val_curve,
            val_metrics=best.summary,
        )
        return self

    # ---- state ---------------------------------------------------------------------------
    def _module_state(self) -> Dict[str, Any]:
        return {
            "adaptor": {k: v.detach().cpu().clone() for k, v in self.adaptor.state_dict().items()},
            "discriminator": {k: v.detach().cpu().clone() for k, v in self.discriminator.state_dict().items()},
        }

    def _load_module_state(self, state: Dict[str, Any]) -> None:
        self.adaptor.load_state_dict(state["adaptor"])
        self.discriminator.load_state_dict(state["discriminator"])
        self._head = None

    def _get_state(self) -> Dict[str, Any]:
        state = copy.deepcopy(self._module_state())
        if self.feature_scale is not None:
            state["feature_mean"] = self.feature_mean.cpu().clone()
            state["feature_scale"] = self.feature_scale.cpu().clone()
        return state

    def _set_state(self, state: Dict[str, Any]) -> None:
        weight = state["discriminator"]["fc1.weight"]
        hidden, dim = weight.shape
        self.adaptor = Adaptor(dim).to(self.device)
        self.discriminator = Discriminator(dim, hidden, self.leaky_slope).to(self.device)
        self.feature_mean = state.get("feature_mean")
        self.feature_scale = state.get("feature_scale")
        self._load_module_state(state)
        self.adaptor.eval()
        self.discriminator.eval()
