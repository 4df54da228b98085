"""RealNet (Zhang et al., CVPR 2024): feature reconstruction with AFS, RRS and realistic synthesis.

Pipeline (METHODS.md, RealNet): a frozen backbone gives stride-4/8/16 features; AFS keeps
the m_k channels of each stage whose anomalous-minus-normal difference best matches the
synthetic masks; one small U-Net per stage reconstructs the normal source's selected
features from the (possibly anomalous) input (L_recon = MSE); the squared residuals are
upsampled, concatenated, normalised (BN, no affine) and RRS keeps the r/2 channels with the
highest global max and r/2 with the highest global mean; an MLP discriminator maps them to
a 2-class map (L_seg = cross-entropy against the mask). Loss L_recon + L_seg, batches of
normal and synthetic images 1:1. Anomaly map: P(anomalous), upsampled to the input (a
Gaussian blur is optional, off by default); image score: its max.

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
from tqdm.auto import tqdm

from ..data.batches import load_images
from ..feature_cache import default_cache_dir
from ..features import gaussian_blur
from ..metrics import aupro, image_auroc, pixel_auroc
from .base import AnomalyModel, register_method
from .selection import BestEpoch
from .realnet_afs import AFSAccumulator, keep_counts, random_channels, select_channels
from .realnet_rrs import Discriminator, ResidualSelector, rrs_counts, stage_residuals
from .realnet_synth import (
    make_synthesizer,
    make_validation_synthesizer,
    resolve_sdas_model,
    resolve_textures,
    synthesize_pool,
    to_uint8,
)
from .realnet_unet import ReconUNet, recon_width
from .simplenet_parts import split_validation

AFS_MODES = ("afs", "random", "all")
RRS_MODES = ("rrs", "all")
SYNTHESIS = ("dtd", "sdas")
_VAL_PIXEL_STRIDE = 2  # validation pixel metrics on every 2nd pixel per axis (4x cheaper)


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
      ``disc_hidden`` (128, 32): discriminator MLP;
      ``epochs`` 60 and Adam ``lr`` 1e-3 (official: 1e-4 for 1000 epochs; a CPU budget allows
      tens: 60 beat 30 on 3-seed validation and fits in 30 minutes, see docs),
      ``train_batch_size`` 16 (8 normal + 8 synthetic; the paper's 16);
      ``blur_sigma`` 0: Gaussian smoothing of the map before the max (0 = none, as the
      paper; sigma 4 scored lower on 3-seed validation, see docs).
    Model selection: ``val_fraction`` of the normal images held out (0: train ``epochs``, keep
    the last) with ``val_anomalies_per_image`` synthetic anomalies each; every ``val_every``
    epochs the mean of I-AUROC, P-AUROC and AUPRO on them is computed and the best epoch kept.
    """

    method = "realnet"

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
        epochs: int = 60,
        lr: float = 1e-3,
        train_batch_size: int = 16,
        val_fraction: float = 0.15,
        val_anomalies_per_image: int = 1,
        val_every: int = 1,
        blur_sigma: float = 0.0,
    ):
        super().__init__(backbone, weights, image_size, crop_size, device, seed, batch_size, cache_dir, use_cache)
        if afs not in AFS_MODES:
            raise ValueError(f"afs must be one of {AFS_MODES}, got {afs!r}")
        if rrs not in RRS_MODES:
            raise ValueError(f"rrs must be one of {RRS_MODES}, got {rrs!r}")
        if synthesis not in SYNTHESIS:
            raise ValueError(f"synthesis must be one of {SYNTHESIS}, got {synthesis!r}")
        if not 0.0 < rrs_fraction <= 1.0:
            raise ValueError(f"rrs_fraction must be in (0, 1], got {rrs_fraction}")
        if epochs < 1 or pool_size < 1 or train_batch_size < 2 or val_every < 1:
            raise ValueError("epochs, pool_size, val_every must be >= 1 and train_batch_size >= 2")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if blur_sigma < 0:
            raise ValueError(f"blur_sigma must be >= 0 (0: no smoothing), got {blur_sigma}")
        self.strides = tuple(sorted(int(s) for s in strides))
        self.afs = afs
        self.afs_keep = list(afs_keep) if isinstance(afs_keep, (list, tuple)) else afs_keep
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
        self.recon_mults = tuple(recon_mults)
        self.disc_hidden = tuple(disc_hidden)
        self.epochs = epochs
        self.lr = lr
        self.train_batch_size = train_batch_size
        self.val_fraction = val_fraction
        self.val_anomalies_per_image = val_anomalies_per_image
        self.val_every = val_every
        self.blur_sigma = blur_sigma
        self.channel_indices: Dict[int, torch.Tensor] = {}
        self.feature_stats: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}
        self.recon_nets: Optional[nn.ModuleDict] = None
        self.selector: Optional[ResidualSelector] = None
        self.discriminator: Optional[Discriminator] = None

    # ---- building blocks -----------------------------------------------------------------
    def _build(self, indices: Dict[int, torch.Tensor]) -> None:
        """Networks for the given per-stride channel choice (deterministic under the global seed)."""
        self.channel_indices = {s: indices[s].long().cpu() for s in self.strides}
        widths = {s: len(self.channel_indices[s]) for s in self.strides}
        self.recon_nets = nn.ModuleDict({
            str(s): ReconUNet(m, recon_width(m, self.recon_ratio, self.recon_min_width), self.recon_mults)
            for s, m in widths.items()
        }).to(self.device)
        total = sum(widths.values())
        counts = rrs_counts(total, self.rrs_fraction)
        self.selector = ResidualSelector(total, counts["max"], counts["mean"], select=self.rrs == "rrs").to(self.device)
        self.discriminator = Discriminator(self.selector.out_channels, self.disc_hidden).to(self.device)

    def _modules(self) -> List[nn.Module]:
        return [self.recon_nets, self.selector, self.discriminator]

    def _select(self, stage: Dict[int, torch.Tensor]) -> Dict[int, torch.Tensor]:
        """Backbone features -> AFS-selected, standardised features (what G_k sees)."""
        picked = {s: stage[s].index_select(1, self.channel_indices[s].to(stage[s].device)) for s in self.strides}
        return self._standardise(picked)

    def _standardise(self, feats: Dict[int, torch.Tensor]) -> Dict[int, torch.Tensor]:
        """Per-channel (x - mean) / std with statistics of the normal training features: backbone
        channels differ in scale by orders of magnitude, which would let a few dominate L_recon."""
        if not self.feature_stats:
            return feats
        out = {}
        for s in self.strides:
            mean, std = self.feature_stats[s]
            out[s] = (feats[s] - mean.to(feats[s].device)[None, :, None, None]) / std.to(feats[s].device)[None, :, None, None]
        return out

    def _forward(self, feats: Dict[int, torch.Tensor]):
        """Selected features -> (reconstructions, B x 2 x S x S logits)."""
        recon = {s: self.recon_nets[str(s)](feats[s]) for s in self.strides}
        x = self.selector(stage_residuals(feats, recon))
        return recon, self.discriminator(x, self.preprocess.output_size)

    def _maps(self, logits: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        maps = torch.softmax(logits, dim=1)[:, 1:2]
        if self.blur_sigma > 0:
            maps = gaussian_blur(maps, self.blur_sigma)
        return maps.flatten(1).amax(dim=1), maps

    def _predict_tensor(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        feats = self._select(self.feature_extractor(self.strides).run_backbone(images))
        _, logits = self._forward(feats)
        return self._maps(logits)

    # ---- data ----------------------------------------------------------------------------
    def _synthesizer(self):
        if self.synthesis == "dtd":
            textures = resolve_textures(self.textures)
            self.fit_info_["textures"] = str(textures)
            return make_synthesizer("dtd", textures=textures)
        from ..synth.sdas import SamplePool

        model_path = resolve_sdas_model(self.sdas_model)
        root = Path(self.sdas_pool_dir) if self.sdas_pool_dir else Path(self.cache_dir or default_cache_dir()) / "sdas_pool"
        pool = SamplePool(root, model_path, seed=self.seed).ensure(self.sdas_samples)
        self.fit_info_.update(sdas_model=str(model_path), sdas_pool=str(pool.dir), sdas_samples=len(pool))
        return make_synthesizer("sdas", sdas_pool=pool)

    def _backbone_batches(self, extractor, images: torch.Tensor) -> Dict[int, torch.Tensor]:
        out: Dict[int, List[torch.Tensor]] = {s: [] for s in self.strides}
        for start in range(0, len(images), self.batch_size):
            feats = extractor.run_backbone(images[start : start + self.batch_size])
            for s in self.strides:
                out[s].append(feats[s].cpu())
        return {s: torch.cat(v) for s, v in out.items()}

    def _choose_channels(self, pool_feats, train_feats, pool_src, pool_masks) -> Dict[int, torch.Tensor]:
        counts = keep_counts(self.backbone.stage_channels, self.strides, self.afs_keep)
        if self.afs == "all":
            return {s: torch.arange(self.backbone.stage_channels[s]) for s in self.strides}
        if self.afs == "random":
            gen = torch.Generator().manual_seed(self.seed + 7)
            return {s: random_channels(self.backbone.stage_channels[s], counts[s], gen) for s in self.strides}
        acc = AFSAccumulator(self.strides)
        bs = self.afs_batch_size
        for start in range(0, len(pool_src), bs):
            sl = slice(start, start + bs)
            acc.add({s: pool_feats[s][sl] for s in self.strides},
                    {s: train_feats[s][pool_src[sl]] for s in self.strides}, pool_masks[sl])
        losses = acc.losses()
        self.fit_info_["afs_losses"] = {str(s): [round(float(v), 6) for v in losses[s]] for s in self.strides}
        return {s: select_channels(losses[s], counts[s]) for s in self.strides}

    # ---- training ------------------------------------------------------------------------
    def _fit(self, paths: List[Path], progress: bool) -> None:
        t0 = time.perf_counter()
        train_idx, val_idx = split_validation(len(paths), self.val_fraction, self.seed)
        train_paths = [paths[i] for i in train_idx]
        extractor = self.feature_extractor(self.strides)
        train_feats = extractor(train_paths, desc="realnet features")
        synth = self._synthesizer()
        train_images, _, _ = load_images(train_paths, self.preprocess, on_error="raise")
        pool_images, pool_masks, pool_src = synthesize_pool(to_uint8(train_images), self.pool_size, synth, self.seed)
        del train_images
        t1 = time.perf_counter()
        pool_feats = self._backbone_batches(extractor, pool_images)
        del pool_images
        indices = self._choose_channels(pool_feats, train_feats, pool_src, pool_masks)
        pool_feats, train_feats = self._select_all(pool_feats, indices), self._select_all(train_feats, indices)
        self.feature_stats = {
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

    def _select_all(self, feats: Dict[int, torch.Tensor], indices: Dict[int, torch.Tensor]) -> Dict[int, torch.Tensor]:
        return {s: feats[s].index_select(1, indices[s]).contiguous() for s in self.strides}

    def _validation_set(self, val_paths, extractor, synth, indices) -> Dict[str, Any]:
        normal = self._standardise(self._select_all(extractor(val_paths, desc="validation features"), indices))
        images, _, _ = load_images(val_paths, self.preprocess, on_error="raise")
        count = len(val_paths) * self.val_anomalies_per_image
        anomalies, masks, _ = synthesize_pool(
            to_uint8(images), count, make_validation_synthesizer(synth), seed=self.seed + 1000
        )
        anom = self._standardise(self._select_all(self._backbone_batches(extractor, anomalies), indices))
        s = self.preprocess.output_size
        all_masks = torch.cat([torch.zeros(len(val_paths), s, s), masks]) > 0.5
        return {
            "feats": {k: torch.cat([normal[k], anom[k]]) for k in self.strides},
            "labels": np.r_[np.zeros(len(val_paths), int), np.ones(count, int)],
            "masks": all_masks[:, ::_VAL_PIXEL_STRIDE, ::_VAL_PIXEL_STRIDE].numpy(),
        }

    @torch.no_grad()
    def _validate(self, val: Dict[str, Any]) -> Dict[str, float]:
        for m in self._modules():
            m.eval()
        scores, maps = [], []
        n = len(val["labels"])
        for start in range(0, n, self.train_batch_size):
            feats = {s: val["feats"][s][start : start + self.train_batch_size].to(self.device) for s in self.strides}
            sc, mp = self._maps(self._forward(feats)[1])
            scores.append(sc.cpu())
            maps.append(mp[:, 0, ::_VAL_PIXEL_STRIDE, ::_VAL_PIXEL_STRIDE].cpu())
        for m in self._modules():
            m.train()
        maps_np = torch.cat(maps).numpy()
        i_auroc = image_auroc(val["labels"], torch.cat(scores).numpy())
        p_auroc = pixel_auroc(val["masks"], maps_np)
        pro = aupro(val["masks"], maps_np)
        return {"image_auroc": i_auroc, "pixel_auroc": p_auroc, "aupro": pro, "score": (i_auroc + p_auroc + pro) / 3}

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
        t1 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):  # same initial weights for a seed, however we got here
            torch.manual_seed(self.seed)
            self._build(indices)
        params = [p for m in self._modules() for p in m.parameters()]
        opt = torch.optim.Adam(params, lr=self.lr, betas=(0.9, 0.999))
        gen = torch.Generator().manual_seed(self.seed + 3)
        n_norm, n_pool = len(train_feats[self.strides[0]]), len(pool_src)
        half = max(1, self.train_batch_size // 2)
        steps = max(1, math.ceil(n_pool / half))
        for m in self._modules():
            m.train()
        best = BestEpoch()
        curve: List[Dict[str, float]] = []
        losses: List[Dict[str, float]] = []
        val_seconds = 0.0
        normal_order = torch.empty(0, dtype=torch.long)
        bar = tqdm(range(1, self.epochs + 1), desc="realnet", unit="epoch", disable=not progress, leave=False)
        for epoch in bar:
            perm = torch.randperm(n_pool, generator=gen)
            tot_rec = tot_seg = 0.0
            for step in range(steps):
                syn = perm[step * half : (step + 1) * half]
                while len(normal_order) < len(syn):
                    normal_order = torch.cat([normal_order, torch.randperm(n_norm, generator=gen)])
                nor, normal_order = normal_order[: len(syn)], normal_order[len(syn) :]
                src = pool_src[syn]
                inputs = {s: torch.cat([train_feats[s][nor], pool_feats[s][syn]]).to(self.device) for s in self.strides}
                targets = {s: torch.cat([train_feats[s][nor], train_feats[s][src]]).to(self.device) for s in self.strides}
                size = self.preprocess.output_size
                mask = torch.cat([torch.zeros(len(nor), size, size), pool_masks[syn]]) > 0.5
                recon, logits = self._forward(inputs)
                l_rec = sum(F.mse_loss(recon[s], targets[s]) for s in self.strides)
                l_seg = F.cross_entropy(logits, mask.long().to(self.device))
                loss = l_rec + l_seg
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot_rec += float(l_rec.detach())
                tot_seg += float(l_seg.detach())
            losses.append({"recon": tot_rec / steps, "seg": tot_seg / steps})
            post = {"rec": f"{losses[-1]['recon']:.4f}", "seg": f"{losses[-1]['seg']:.4f}"}
            if val is not None and (epoch % self.val_every == 0 or epoch == self.epochs):
                tv = time.perf_counter()
                metrics = self._validate(val)
                val_seconds += time.perf_counter() - tv
                curve.append({"epoch": epoch, **losses[-1], **metrics})
                best.update(epoch, metrics, self._module_state)
                post.update(val=f"{metrics['score']:.4f}", best=best.epoch)
            bar.set_postfix(post)
        bar.close()
        chosen, selection = best.restore(self._load_module_state, self.epochs)
        for m in self._modules():
            m.eval()
        self.fitted_ = True
        total = sum(len(v) for v in self.channel_indices.values())
        self.fit_info_.update(
            train_loop_seconds=time.perf_counter() - t1,
            validation_seconds=val_seconds,
            chosen_epoch=chosen,
            epochs=chosen,
            epochs_run=self.epochs,
            selection=selection,
            steps_per_epoch=steps,
            afs_mode=self.afs,
            afs_indices={str(s): self.channel_indices[s].tolist() for s in self.strides},
            kept_channels={str(s): len(self.channel_indices[s]) for s in self.strides},
            rrs_mode=self.rrs,
            residual_channels=total,
            rrs_selected={"max": self.selector.n_max, "mean": self.selector.n_mean} if self.rrs == "rrs" else "all",
            loss_curve=losses,
            val_curve=curve,
            val_metrics=best.summary,
        )
        return self

    # ---- state ---------------------------------------------------------------------------
    def _module_state(self) -> Dict[str, Any]:
        return {
            name: {k: v.detach().cpu().clone() for k, v in mod.state_dict().items()}
            for name, mod in (("recon", self.recon_nets), ("selector", self.selector), ("disc", self.discriminator))
        }

    def _load_module_state(self, state: Dict[str, Any]) -> None:
        self.recon_nets.load_state_dict(state["recon"])
        self.selector.load_state_dict(state["selector"])
        self.discriminator.load_state_dict(state["disc"])

    def _get_state(self) -> Dict[str, Any]:
        state = copy.deepcopy(self._module_state())
        state["channel_indices"] = {int(s): v.clone() for s, v in self.channel_indices.items()}
        state["feature_stats"] = {int(s): (m.clone(), v.clone()) for s, (m, v) in self.feature_stats.items()}
        return state

    def _set_state(self, state: Dict[str, Any]) -> None:
        self._build({int(s): v for s, v in state["channel_indices"].items()})
        self.feature_stats = {int(s): (m, v) for s, (m, v) in state.get("feature_stats", {}).items()}
        self._load_module_state(state)
        for m in self._modules():
            m.eval()
