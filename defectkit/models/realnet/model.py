"""RealNet (Zhang et al., CVPR 2024): feature reconstruction with AFS, RRS and realistic synthesis.

Pipeline (docs/methods/realnet.md): a frozen backbone gives stride-4/8/16 features; AFS keeps
the m_k channels of each stage whose anomalous-minus-normal difference best matches the
synthetic masks; one small U-Net per stage reconstructs the normal source's selected
features from the (possibly anomalous) input (L_recon = MSE); the squared residuals are
upsampled, concatenated, normalised (BN, no affine) and RRS keeps the r/2 channels with the
highest global max and r/2 with the highest global mean; the official code's 3x3-conv
decoder (``conv_decoder``, on the raw selected residuals; ``head="mlp"``: the paper's
per-location MLP on the normalised ones) maps them to a 2-class map (L_seg = cross-entropy
against the mask). Loss L_recon + L_seg, batches of normal and synthetic images 1:1.
Anomaly map: P(anomalous), upsampled to the input (a Gaussian blur is optional, off by
default); image score: its max.

Practical on a CPU: the synthetic pool is made once per fit and its frozen features are
computed once (training images' features come from the on-disk feature cache), so an
epoch runs only the reconstruction nets and the discriminator. The epoch kept is chosen on
a validation split -- held-out normal training images plus synthetic anomalies made from
them -- never on test data. See docs/methods/realnet.md.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...data.batches import load_images
from ...features import default_cache_dir, gaussian_blur
from ...synth.textures import resolve_textures
from ...synth.validation import mixed_generator
from ...utils.images import to_uint8
from ..base import AnomalyModel
from ..components.bounds import check_bounds
from ..components.probability import probability
from ..components.training import check_loop_params, train_epochs
from ..components.validation import family_scores, subsample, validation_scores
from ..components.validation_split import ValidationAnomalies, check_val_split, validation_anomalies
from ..registry import register_method
from .afs import AFSAccumulator, keep_counts, random_channels, select_channels
from .conv_decoder import ConvDiscriminator
from .rrs import Discriminator, ResidualSelector, rrs_counts, stage_residuals
from .synth import make_synthesizer, resolve_sdas_model, synthesize_pool
from .unet import ReconUNet, recon_width

AFS_MODES = ("afs", "random", "all")
RRS_MODES = ("rrs", "all")
SYNTHESIS = ("dtd", "sdas")
HEADS = ("mlp", "conv")


@register_method
class RealNet(AnomalyModel):
    """RealNet; every setting is a constructor argument (paper defaults scaled to the backbone).

    Method parameters:
      ``strides`` (4, 8, 16): backbone stages reconstructed (EfficientNet-Lite0: 24/40/112 ch.);
      ``afs`` "afs" | "random" (ablation: random channel choice, RDR) | "all" (no selection);
      ``afs_keep`` 0.5: m_k as one fraction of every stage's width (Lite0: 12/20/56), or
      "paper" (the paper's WRN-50 fractions per stride: all of strides 4 and 8, half of 16,
      an eighth of 32; Lite0: 24/40/56), or explicit counts (list in stride order); 0.5 won
      on the 3-seed validation comparison (docs/methods/realnet.md); ``afs_batch_size`` 16:
      triplets per AFS batch (min-max is per batch);
      ``rrs`` "rrs" | "all" (ablation: all residuals to the discriminator); ``rrs_fraction``
      1/3: r = fraction x m';
      ``synthesis`` "dtd" | "sdas"; ``textures`` DTD folder (default $DEFECTKIT_TEXTURES,
      $DEFECTKIT_DTD_DIR or ../shared/data/dtd_subset); ``sdas_model`` an SDAS checkpoint
      (default $DEFECTKIT_SDAS_MODEL), ``sdas_pool_dir`` where its samples are cached,
      ``sdas_samples`` 64 diffusion samples drawn; ``pool_size`` 256 synthetic training images;
      ``recon_ratio`` 0.5 / ``recon_min_width`` 16 / ``recon_mults`` (1, 2, 4): U-Net widths;
      ``head`` "conv" (the official code's decoder: 3x3 convolutions 128 -> 32 -> 8, x2
      upsampling, 8 -> 4 -> 2, on the raw selected residuals, BN only ranking the channels;
      ``models.realnet.conv_decoder``; chosen over "mlp" on validation, bottle and
      metal_plate, docs/methods/realnet.md) or "mlp" (the paper's per-location MLP on the
      BN-normalised selected residuals; ``disc_hidden`` (128, 32) its widths);
      ``epochs`` 60 and Adam ``lr`` 1e-3 (official: 1e-4 for 1000 epochs; a CPU budget allows
      tens: 60 beat 30 on 3-seed validation and fits in 30 minutes, see docs),
      ``train_batch_size`` 16 (8 normal + 8 synthetic; the paper's 16);
      ``blur_sigma`` 0: Gaussian smoothing of the map before the max (0 = none, as the
      paper; sigma 4 scored lower on 3-seed validation, see docs).
    Model selection: ``val_fraction`` of the normal images held out (0: train ``epochs``, keep
    the last) with ``val_anomalies_per_image`` synthetic anomalies each; every ``val_every``
    epochs the mean of I-AUROC, P-AUROC and AUPRO on them is computed and the best epoch kept.
    ``val_split`` "suite" (default; ``models.components.validation_split``): the shared
    ``synth.validation_suite`` (DTD blends, CutPaste, and stains, scratches and blur that
    RealNet never trains on; ``val_anomalies_per_image`` per family, at least 24 per family),
    with per-family metrics of the kept epoch in ``fit_info_["val_families"]``; "mixed" (or
    "own"): the training synthesis, CutPaste and CutPaste-scar in equal parts.
    """

    method = "realnet"
    # files saved before the head option existed used the per-pixel MLP; files saved before
    # val_split existed, or before "suite" became the default, chose their epoch on "mixed"
    legacy_params = {"head": "mlp", "val_split": "mixed"}
    #: RealNet's historical name of its own validation split
    OWN_SPLIT_NAMES = ("mixed",)

    def __init__(
        self,
        strides: Tuple[int, ...] = (4, 8, 16),
        afs: str = "afs",
        afs_keep: Union[str, float, Sequence[int]] = 0.5,
        afs_batch_size: int = 16,
        rrs: str = "rrs",
        rrs_fraction: float = 1.0 / 3.0,
        synthesis: str = "dtd",
        textures: Optional[str] = None,
        sdas_model: Optional[str] = None,
        sdas_pool_dir: Optional[str] = None,
        sdas_samples: int = 64,
        pool_size: int = 256,
        recon_ratio: float = 0.5,
        recon_min_width: int = 16,
        recon_mults: Tuple[int, ...] = (1, 2, 4),
        disc_hidden: Tuple[int, ...] = (128, 32),
        head: str = "conv",
        epochs: int = 60,
        lr: float = 1e-3,
        train_batch_size: int = 16,
        val_fraction: float = 0.15,
        val_anomalies_per_image: int = 1,
        val_split: str = "suite",
        val_every: int = 1,
        blur_sigma: float = 0.0,
        patience: int = 0,
        **base: Any,
    ):
        super().__init__(**base)
        self.strides = strides
        self.afs = afs
        self.afs_keep = afs_keep
        self.afs_batch_size = afs_batch_size
        self.rrs = rrs
        self.rrs_fraction = rrs_fraction
        self.synthesis = synthesis
        self.textures = textures
        self.sdas_model = sdas_model
        self.sdas_pool_dir = sdas_pool_dir
        self.sdas_samples = sdas_samples
        self.pool_size = pool_size
        self.recon_ratio = recon_ratio
        self.recon_min_width = recon_min_width
        self.recon_mults = recon_mults
        self.disc_hidden = disc_hidden
        self.head = head
        self.epochs = epochs
        self.lr = lr
        self.train_batch_size = train_batch_size
        self.val_fraction = val_fraction
        self.val_anomalies_per_image = val_anomalies_per_image
        self.val_split = val_split
        self.val_every = val_every
        self.blur_sigma = blur_sigma
        self.patience = patience

    def check_params(self) -> None:
        super().check_params()
        check_loop_params(self)
        for name, value, allowed in (
            ("afs", self.afs, AFS_MODES),
            ("rrs", self.rrs, RRS_MODES),
            ("synthesis", self.synthesis, SYNTHESIS),
            ("head", self.head, HEADS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        check_val_split(self.val_split, self.OWN_SPLIT_NAMES)
        if not 0.0 < self.rrs_fraction <= 1.0:
            raise ValueError(f"rrs_fraction must be in (0, 1], got {self.rrs_fraction}")
        if self.pool_size < 1 or self.train_batch_size < 2:
            raise ValueError(
                f"pool_size must be >= 1 and train_batch_size >= 2, got {self.pool_size}, {self.train_batch_size}"
            )
        if self.blur_sigma < 0:
            raise ValueError(f"blur_sigma must be >= 0 (0: no smoothing), got {self.blur_sigma}")
        check_bounds(
            self,
            afs_batch_size=">= 1",
            sdas_samples=">= 1",
            recon_ratio="(0, 1]",
            recon_min_width=">= 1",
            lr="> 0",
            val_anomalies_per_image=">= 1",
        )
        for name in ("recon_mults", "disc_hidden"):
            if any(v < 1 for v in getattr(self, name)):
                raise ValueError(f"{name} must hold ints >= 1, got {getattr(self, name)!r}")

    @property
    def _stages(self) -> Tuple[int, ...]:
        """``strides`` sorted, as ints: the order every per-stage dict is built in."""
        return tuple(sorted(int(s) for s in self.strides))

    # ---- building blocks -----------------------------------------------------------------
    def _build(self, indices: Dict[int, torch.Tensor]) -> None:
        """Networks for the given per-stride channel choice (deterministic under the global seed)."""
        self.channel_indices_ = {s: indices[s].long().cpu() for s in self._stages}
        widths = {s: len(self.channel_indices_[s]) for s in self._stages}
        self.recon_nets_ = nn.ModuleDict(
            {
                str(s): ReconUNet(m, recon_width(m, self.recon_ratio, self.recon_min_width), self.recon_mults)
                for s, m in widths.items()
            }
        ).to(self.device_)
        total = sum(widths.values())
        counts = rrs_counts(total, self.rrs_fraction)
        conv = self.head == "conv"
        self.selector_ = ResidualSelector(total, counts["max"], counts["mean"], select=self.rrs == "rrs", raw=conv).to(
            self.device_
        )
        channels = self.selector_.out_channels
        disc = ConvDiscriminator(channels) if conv else Discriminator(channels, self.disc_hidden)
        self.discriminator_ = disc.to(self.device_)

    def _modules(self) -> List[nn.Module]:
        return [self.recon_nets_, self.selector_, self.discriminator_]

    def _select(self, stage: Dict[int, torch.Tensor]) -> Dict[int, torch.Tensor]:
        """Backbone features -> AFS-selected, standardised features (what G_k sees)."""
        picked = {s: stage[s].index_select(1, self.channel_indices_[s].to(stage[s].device)) for s in self._stages}
        return self._standardise(picked)

    def _standardise(self, feats: Dict[int, torch.Tensor]) -> Dict[int, torch.Tensor]:
        """Per-channel (x - mean) / std with statistics of the normal training features: backbone
        channels differ in scale by orders of magnitude, which would let a few dominate L_recon."""
        if not getattr(self, "feature_stats_", None):
            return feats
        out = {}
        for s in self._stages:
            mean, std = self.feature_stats_[s]
            out[s] = (feats[s] - mean.to(feats[s].device)[None, :, None, None]) / std.to(feats[s].device)[
                None, :, None, None
            ]
        return out

    def _reconstruct(self, feats: Dict[int, torch.Tensor]):
        """Selected features -> (reconstructions, the RRS-selected residuals the discriminator reads)."""
        recon = {s: self.recon_nets_[str(s)](feats[s]) for s in self._stages}
        return recon, self.selector_(stage_residuals(feats, recon))

    def _forward(self, feats: Dict[int, torch.Tensor]):
        """Selected features -> (reconstructions, B x 2 x S x S logits): what training needs."""
        recon, x = self._reconstruct(feats)
        return recon, self.discriminator_(x, self.preprocess.output_size)

    def _score_maps(self, feats: Dict[int, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Selected features -> (image scores, B x 1 x S x S maps of P(anomalous)).

        P(anomalous) = softmax(logits)[1] = sigmoid(l_1 - l_0); the discriminator gives the
        difference directly (``anomaly_logit``), one channel instead of two logits; its sigmoid is
        taken by ``components.probability`` (exact for tiny probabilities in ONNX Runtime too)."""
        _, x = self._reconstruct(feats)
        maps = probability(self.discriminator_.anomaly_logit(x, self.preprocess.output_size))
        if self.blur_sigma > 0:
            maps = gaussian_blur(maps, self.blur_sigma)
        return maps.flatten(1).amax(dim=1), maps

    def _predict_tensor(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        feats = self._select(self.feature_extractor(self._stages).run_backbone(images))
        return self._score_maps(feats)

    # ---- data ----------------------------------------------------------------------------
    def _synthesizer(self):
        if self.synthesis == "dtd":
            textures = resolve_textures(self.textures, what="RealNet with synthesis='dtd'")
            self.fit_info_["textures"] = str(textures)
            return make_synthesizer("dtd", textures=textures)
        from ...synth.sdas import SamplePool

        model_path = resolve_sdas_model(self.sdas_model)
        root = (
            Path(self.sdas_pool_dir)
            if self.sdas_pool_dir
            else Path(self.cache_dir or default_cache_dir()) / "sdas_pool"
        )
        pool = SamplePool(root, model_path, seed=self.seed).ensure(self.sdas_samples)
        self.fit_info_.update(sdas_model=str(model_path), sdas_pool=str(pool.dir), sdas_samples=len(pool))
        return make_synthesizer("sdas", sdas_pool=pool)

    def _backbone_batches(self, extractor, images: torch.Tensor) -> Dict[int, torch.Tensor]:
        out: Dict[int, List[torch.Tensor]] = {s: [] for s in self._stages}
        for start in range(0, len(images), self.batch_size):
            feats = extractor.run_backbone(images[start : start + self.batch_size])
            for s in self._stages:
                out[s].append(feats[s].cpu())
        return {s: torch.cat(v) for s, v in out.items()}

    def _choose_channels(self, pool_feats, train_feats, pool_src, pool_masks) -> Dict[int, torch.Tensor]:
        counts = keep_counts(self.backbone_.stage_channels, self._stages, self.afs_keep)
        if self.afs == "all":
            return {s: torch.arange(self.backbone_.stage_channels[s]) for s in self._stages}
        if self.afs == "random":
            gen = torch.Generator().manual_seed(self.seed + 7)
            return {s: random_channels(self.backbone_.stage_channels[s], counts[s], gen) for s in self._stages}
        acc = AFSAccumulator(self._stages)
        bs = self.afs_batch_size
        for start in range(0, len(pool_src), bs):
            sl = slice(start, start + bs)
            acc.add(
                {s: pool_feats[s][sl] for s in self._stages},
                {s: train_feats[s][pool_src[sl]] for s in self._stages},
                pool_masks[sl],
            )
        losses = acc.losses()
        self.fit_info_["afs_losses"] = {str(s): [round(float(v), 6) for v in losses[s]] for s in self._stages}
        return {s: select_channels(losses[s], counts[s]) for s in self._stages}

    # ---- training ------------------------------------------------------------------------
    def _fit(self, paths: List[Path], progress: bool) -> None:
        t0 = time.perf_counter()
        train_idx, val_idx = self._hold_out(paths, self.val_fraction)
        train_paths = [paths[i] for i in train_idx]
        extractor = self.feature_extractor(self._stages)
        train_feats = extractor(train_paths, desc="realnet features")
        synth = self._synthesizer()
        pool_images, pool_masks, pool_src = synthesize_pool(
            self._uint8_images(train_paths), self.pool_size, synth, self.seed
        )
        t1 = time.perf_counter()
        pool_feats = self._backbone_batches(extractor, pool_images)
        del pool_images
        indices = self._choose_channels(pool_feats, train_feats, pool_src, pool_masks)
        pool_feats, train_feats = self._select_all(pool_feats, indices), self._select_all(train_feats, indices)
        self.feature_stats_ = {
            s: (f.mean(dim=(0, 2, 3)), f.std(dim=(0, 2, 3)).clamp_min(1e-6)) for s, f in train_feats.items()
        }
        pool_feats, train_feats = self._standardise(pool_feats), self._standardise(train_feats)

        val = None
        if val_idx is not None:
            val = self._validation_set([paths[i] for i in val_idx], extractor, synth, indices)
        self.fit_info_.update(
            feature_seconds=time.perf_counter() - t0,
            synthesis_seconds=t1 - t0,
            train_images=int(len(train_idx)),
            val_images=0 if val_idx is None else int(len(val_idx)),
            val_image_names=[] if val_idx is None else [paths[i].name for i in val_idx],
            pool_size=int(len(pool_src)),
            pool_mask_fraction=float((pool_masks > 0.5).float().mean()),
        )
        self.train_on_features(indices, train_feats, pool_feats, pool_src, pool_masks, val, progress)

    def _uint8_images(self, paths: List[Path], chunk: int = 32) -> np.ndarray:
        """The preprocessed training images as N x S x S x 3 uint8, decoded in chunks: the pool's
        sources, without a float copy of every image (4x their size) held at once."""
        parts = [
            to_uint8(load_images(paths[i : i + chunk], self.preprocess, on_error="raise")[0])
            for i in range(0, len(paths), chunk)
        ]
        return np.concatenate(parts)

    def _select_all(self, feats: Dict[int, torch.Tensor], indices: Dict[int, torch.Tensor]) -> Dict[int, torch.Tensor]:
        return {s: feats[s].index_select(1, indices[s]).contiguous() for s in self._stages}

    def validation_anomalies(self, images: torch.Tensor, synth=None) -> ValidationAnomalies:
        """The ``val_split`` anomalies made from held-out normal ``images``; ``synth`` is the
        training synthesis the "mixed" split draws from (None: built from the parameters)."""

        def mixed() -> Tuple[torch.Tensor, torch.Tensor, str]:
            count = len(images) * self.val_anomalies_per_image
            generator = mixed_generator(synth if synth is not None else self._synthesizer())
            anomalies, masks, _ = synthesize_pool(to_uint8(images), count, generator, seed=self.seed + 1000)
            return anomalies, masks, "training synthesis + cutpaste + cutpaste_scar"

        return validation_anomalies(
            images,
            self.val_split,
            mixed,
            self.val_anomalies_per_image,
            seed=self.seed + 1000,
            textures=self.fit_info_.get("textures"),
        )

    def _validation_set(self, val_paths, extractor, synth, indices) -> Dict[str, Any]:
        normal = self._standardise(self._select_all(extractor(val_paths, desc="validation features"), indices))
        images, _, _ = load_images(val_paths, self.preprocess, on_error="raise")
        made = self.validation_anomalies(images, synth)
        made.record(self.fit_info_)
        anom = self._standardise(self._select_all(self._backbone_batches(extractor, made.images), indices))
        s = self.preprocess.output_size
        all_masks = torch.cat([torch.zeros(len(val_paths), s, s, dtype=torch.bool), made.masks])
        return {
            "feats": {k: torch.cat([normal[k], anom[k]]) for k in self._stages},
            "labels": np.r_[np.zeros(len(val_paths), int), np.ones(len(made.images), int)],
            "masks": subsample(all_masks).numpy(),
            "families": made.row_families(len(val_paths)),
        }

    @torch.no_grad()
    def _validate(self, val: Dict[str, Any], per_family: bool = False):
        for m in self._modules():
            m.eval()
        scores, maps = [], []
        n = len(val["labels"])
        for start in range(0, n, self.train_batch_size):
            feats = {s: val["feats"][s][start : start + self.train_batch_size].to(self.device_) for s in self._stages}
            sc, mp = self._score_maps(feats)
            scores.append(sc.cpu())
            maps.append(subsample(mp[:, 0]).cpu())
        for m in self._modules():
            m.train()
        scores, maps = torch.cat(scores).numpy(), torch.cat(maps).numpy()
        if per_family:
            return family_scores(val["labels"], scores, val["masks"], maps, val["families"])
        return validation_scores(val["labels"], scores, val["masks"], maps)

    def train_on_features(
        self,
        indices: Dict[int, torch.Tensor],
        train_feats: Dict[int, torch.Tensor],
        pool_feats: Dict[int, torch.Tensor],
        pool_src: torch.Tensor,
        pool_masks: torch.Tensor,
        val: Optional[Dict[str, Any]] = None,
        progress: bool = False,
    ) -> "RealNet":
        """Train on frozen, already channel-selected features.

        ``train_feats[s]``: normal images (N x m_s x h x w); ``pool_feats[s]``: synthetic
        images (P x m_s x h x w) made from normal image ``pool_src[p]`` with mask
        ``pool_masks[p]`` (S x S, in [0, 1]). Each step: half normal images (input = target),
        half synthetic (target = the normal source's features). With ``val`` the best
        validation epoch is kept; otherwise the last.
        """
        info = self._fit_info()
        with torch.random.fork_rng(devices=[]):  # same initial weights for a seed, however we got here
            torch.manual_seed(self.seed)
            self._build(indices)
        params = [p for m in self._modules() for p in m.parameters()]
        opt = torch.optim.Adam(params, lr=self.lr, betas=(0.9, 0.999))
        gen = torch.Generator().manual_seed(self.seed + 3)
        n_norm, n_pool = len(train_feats[self._stages[0]]), len(pool_src)
        half = max(1, self.train_batch_size // 2)
        steps = max(1, math.ceil(n_pool / half))
        size = self.preprocess.output_size
        device = self.device_
        for m in self._modules():
            m.train()
        normal_order = [torch.empty(0, dtype=torch.long)]  # carried across epochs

        def run_epoch(epoch: int) -> Dict[str, float]:
            perm = torch.randperm(n_pool, generator=gen)
            tot_rec = tot_seg = 0.0
            for step in range(steps):
                syn = perm[step * half : (step + 1) * half]
                while len(normal_order[0]) < len(syn):
                    normal_order[0] = torch.cat([normal_order[0], torch.randperm(n_norm, generator=gen)])
                nor, normal_order[0] = normal_order[0][: len(syn)], normal_order[0][len(syn) :]
                src = pool_src[syn]
                inputs = {s: torch.cat([train_feats[s][nor], pool_feats[s][syn]]).to(device) for s in self._stages}
                targets = {s: torch.cat([train_feats[s][nor], train_feats[s][src]]).to(device) for s in self._stages}
                mask = torch.cat([torch.zeros(len(nor), size, size), pool_masks[syn]]) > 0.5
                recon, logits = self._forward(inputs)
                l_rec = sum(F.mse_loss(recon[s], targets[s]) for s in self._stages)
                l_seg = F.cross_entropy(logits, mask.long().to(device))
                loss = l_rec + l_seg
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot_rec += float(l_rec.detach())
                tot_seg += float(l_seg.detach())
            return {"recon": tot_rec / steps, "seg": tot_seg / steps}

        summary = train_epochs(
            run_epoch,
            None if val is None else (lambda: self._validate(val)),
            self._module_state,
            self._load_module_state,
            epochs=self.epochs,
            val_every=self.val_every,
            patience=self.patience,
            desc="realnet",
            progress=progress,
        )
        if val is not None and val.get("families") is not None:  # the kept epoch, family by family
            info["val_families"] = self._validate(val, per_family=True)
        for m in self._modules():
            m.eval()
        self._fitted = True
        total = sum(len(v) for v in self.channel_indices_.values())
        info.update(
            summary,
            steps_per_epoch=steps,
            afs_mode=self.afs,
            afs_indices={str(s): self.channel_indices_[s].tolist() for s in self._stages},
            kept_channels={str(s): len(self.channel_indices_[s]) for s in self._stages},
            rrs_mode=self.rrs,
            residual_channels=total,
            rrs_selected={"max": self.selector_.n_max, "mean": self.selector_.n_mean} if self.rrs == "rrs" else "all",
        )
        return self

    # ---- state ---------------------------------------------------------------------------
    def _module_state(self) -> Dict[str, Any]:
        return {
            name: {k: v.detach().cpu().clone() for k, v in mod.state_dict().items()}
            for name, mod in (("recon", self.recon_nets_), ("selector", self.selector_), ("disc", self.discriminator_))
        }

    def _load_module_state(self, state: Dict[str, Any]) -> None:
        self.recon_nets_.load_state_dict(state["recon"])
        self.selector_.load_state_dict(state["selector"])
        self.discriminator_.load_state_dict(state["disc"])

    def _get_state(self) -> Dict[str, Any]:
        state = copy.deepcopy(self._module_state())
        state["channel_indices"] = {int(s): v.clone() for s, v in self.channel_indices_.items()}
        state["feature_stats"] = {int(s): (m.clone(), v.clone()) for s, (m, v) in self.feature_stats_.items()}
        return state

    def _set_state(self, state: Dict[str, Any]) -> None:
        self._build({int(s): v for s, v in state["channel_indices"].items()})
        self.feature_stats_ = {int(s): (m, v) for s, (m, v) in state.get("feature_stats", {}).items()}
        self._load_module_state(state)
        for m in self._modules():
            m.eval()
