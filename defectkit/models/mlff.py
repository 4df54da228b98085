"""MLFF, the multi-level feature fusion network of seed 002, supervised by pseudo-anomalies.

Backbone stages 1-3; STLNet's texture branch (TEM + PTFEM) on stages 1+2; SCNet's
self-calibrated convolution on stage 3; fusion into a per-pixel feature ``phi`` and a
linear score ``s`` (``mlff_net.py``). The training set is repeated ``repeat`` times and a
fraction ``anomaly_ratio`` of the copies is turned into pseudo-anomalies (FCDD confetti
noise and CutPaste, each with its mask). Losses (``mlff_losses.py``): class-balanced
hypersphere loss on the pseudo-Huber distance, score constraint on ``s``, and the
feature-score consistency on normal patches. Map = ``s`` upsampled bilinearly; image
score = max of the map.

The paper lost its equations; METHODS.md reconstructs them from FCDD, STLNet and SCNet,
and docs/methods/mlff.md lists every deviation. The epoch kept is chosen on a validation
split of held-out normal training images plus synthetic anomalies of kinds *other* than
the training pseudo-anomalies (HOA by default), never on test images (PROTOCOL.md).

The rows of the paper's Table 4 are parameter switches; ``TABLE4_VARIANTS`` lists them
as method variants, so one ``defectkit benchmark --methods ...`` run gives the whole table.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.batches import load_images
from ..features import upsample_maps
from ..metrics import aupro, image_auroc, pixel_auroc
from ..synth import make_generator
from .base import AnomalyModel, register_method
from .selection import BestEpoch
from .mlff_losses import (
    cell_labels,
    consistency_loss,
    feature_constraint_loss,
    patch_view,
    pseudo_huber,
    score_constraint_loss,
)
from .mlff_net import OUTPUT_STRIDES, STRIDES, MLFFNet, split_stages
from .simplenet_parts import split_validation

MAP_SOURCES = ("auto", "score", "distance")
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "cosine")
#: validation pixel metrics read every 2nd pixel per axis (maps are bilinear upsamplings
#: of a stride-8 or stride-4 grid, so a quarter of the pixels loses little and is 4x cheaper).
_VAL_PIXEL_STRIDE = 2


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """3 x S x S float in [0, 1] -> S x S x 3 uint8 (what the synthesis generators take)."""
    return (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def synthesise(images: torch.Tensor, sources: Sequence[int], generator, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pseudo-anomalies made from ``images[sources]`` -> (K x 3 x S x S float, K x S x S float masks)."""
    rng = np.random.default_rng(seed)
    out, masks = [], []
    for i in sources:
        res = generator(to_uint8_hwc(images[i]), rng)
        out.append(torch.from_numpy(np.ascontiguousarray(res.image)).permute(2, 0, 1).float() / 255.0)
        masks.append(torch.from_numpy(np.asarray(res.mask, dtype=np.float32)))
    if not out:
        s = images.shape[-1]
        return images.new_zeros(0, 3, s, s), images.new_zeros(0, s, s)
    return torch.stack(out), torch.stack(masks)


def copy_schedule(n_images: int, repeat: int, anomaly_ratio: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """The training set repeated ``repeat`` times; a seeded ``anomaly_ratio`` of the copies is
    turned anomalous -> (source image of each normal copy, source image of each anomalous copy)."""
    copies = np.tile(np.arange(n_images), repeat)
    n_anom = int(round(anomaly_ratio * len(copies)))
    perm = np.random.default_rng(seed).permutation(len(copies))
    return np.sort(copies[perm[n_anom:]]), np.sort(copies[perm[:n_anom]])


@register_method
class MLFF(AnomalyModel):
    """Multi-level feature fusion network; every hyper-parameter is a constructor argument.

    Architecture: ``width`` channels in the branches, ``feature_dim`` dims of ``phi``,
    ``texture`` (STLNet TEM + PTFEM, ``tem_levels`` / ``ptfem_levels`` quantisation levels,
    ``pyramid`` regions per side), ``scconv`` (self-calibrated conv, ``scconv_pooling`` = r).
    Pseudo-anomalies: ``repeat`` copies of the training set, ``anomaly_ratio`` of them
    anomalous, drawn from ``pseudo_kinds`` (defectkit.synth kinds); a grid cell is anomalous
    when more than ``label_threshold`` of it is masked, normal when none is, else ignored.
    Losses: L = L_f + ``score_weight`` * L_s(``margin_normal``, ``margin_anomalous``)
    + ``consistency_weight`` * L_c(patches of ``consistency_patch`` cells).
    Optimisation: ``optimizer`` ("sgd" as the paper, momentum 0.9, or "adam"), ``lr``,
    ``weight_decay``, ``train_batch_size``, at most ``epochs`` passes over the repeated set
    and at most ``max_train_minutes``; ``finetune_backbone`` trains the backbone too
    (``backbone_lr``), otherwise frozen features are computed once (and cached).
    Selection: ``val_fraction`` of the normal images held out, each with
    ``val_anomalies_per_image`` anomalies of ``val_kinds`` (``val_textures``: folder for
    "dtd"); the epoch with the best mean of I-AUROC, P-AUROC and AUPRO is kept; training
    stops after ``patience`` validations without improvement (0: never early).
    ``map_source``: "score" (the paper), "distance" (pseudo-Huber h, FCDD), or "auto" =
    score when ``score_weight`` > 0 (an untrained score head is meaningless), else distance.
    ``blur_sigma``: Gaussian smoothing of the bilinear map (0 = none, the default: every
    sigma tried scored lower on validation, docs/methods/mlff.md).
    ``fresh_anomalies``: draw new pseudo-anomalies (same source copies, new defects) before
    every epoch after the first, as an online data loader would, instead of one fixed set.
    ``lr_schedule``: "constant" or "cosine" (decays ``lr`` to 0 over ``epochs``).
    ``output_stride``: grid of the texture branch, the losses and the map: 4 (default, the
    paper: stage 2 upsampled onto stage 1's grid) or 8 (stage 1 pooled; about 5x cheaper,
    scored lower on validation). ``consistency_patch`` counts grid cells (8 at stride 4 =
    32 px).
    """

    method = "mlff"
    #: files written before ``output_stride`` existed were trained on the stride-8 grid
    legacy_params = {"output_stride": 8}

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
        texture: bool = True,
        scconv: bool = True,
        width: int = 64,
        feature_dim: int = 32,
        tem_levels: int = 16,
        ptfem_levels: int = 8,
        pyramid: Tuple[int, ...] = (1, 2, 4, 8),
        scconv_pooling: int = 4,
        repeat: int = 10,
        anomaly_ratio: float = 0.5,
        pseudo_kinds: Tuple[str, ...] = ("confetti", "cutpaste", "cutpaste_scar"),
        label_threshold: float = 0.25,
        score_weight: float = 3.0,
        consistency_weight: float = 0.1,
        margin_normal: float = 0.0,
        margin_anomalous: float = 1.0,
        consistency_patch: int = 8,
        optimizer: str = "adam",
        lr: float = 3e-4,
        weight_decay: float = 3e-5,
        train_batch_size: int = 16,
        epochs: int = 30,
        max_train_minutes: Optional[float] = 20.0,
        finetune_backbone: bool = False,
        backbone_lr: float = 1e-4,
        val_fraction: float = 0.15,
        val_anomalies_per_image: int = 2,
        val_kinds: Tuple[str, ...] = ("hoa",),
        val_textures: Optional[str] = None,
        val_every: int = 1,
        patience: int = 5,
        map_source: str = "auto",
        blur_sigma: float = 0.0,
        fresh_anomalies: bool = False,
        lr_schedule: str = "constant",
        output_stride: int = 4,
    ):
        super().__init__(backbone, weights, image_size, crop_size, device, seed, batch_size, cache_dir, use_cache)
        if map_source not in MAP_SOURCES:
            raise ValueError(f"map_source must be one of {MAP_SOURCES}, got {map_source!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
        if not 0.0 <= anomaly_ratio <= 1.0 or repeat < 1 or epochs < 1:
            raise ValueError("anomaly_ratio must be in [0, 1], repeat and epochs >= 1")
        if blur_sigma < 0:
            raise ValueError(f"blur_sigma must be >= 0 (0: no smoothing), got {blur_sigma}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.texture, self.scconv = bool(texture), bool(scconv)
        self.width, self.feature_dim = width, feature_dim
        self.tem_levels, self.ptfem_levels = tem_levels, ptfem_levels
        self.pyramid, self.scconv_pooling = tuple(pyramid), scconv_pooling
        self.repeat, self.anomaly_ratio = repeat, anomaly_ratio
        self.pseudo_kinds = tuple([pseudo_kinds] if isinstance(pseudo_kinds, str) else pseudo_kinds)
        self.label_threshold = label_threshold
        self.score_weight, self.consistency_weight = score_weight, consistency_weight
        self.margin_normal, self.margin_anomalous = margin_normal, margin_anomalous
        self.consistency_patch = consistency_patch
        self.optimizer, self.lr, self.weight_decay = optimizer, lr, weight_decay
        self.train_batch_size, self.epochs, self.max_train_minutes = train_batch_size, epochs, max_train_minutes
        self.finetune_backbone, self.backbone_lr = bool(finetune_backbone), backbone_lr
        self.val_fraction, self.val_anomalies_per_image = val_fraction, val_anomalies_per_image
        self.val_kinds = tuple([val_kinds] if isinstance(val_kinds, str) else val_kinds)
        self.val_textures = val_textures
        self.val_every, self.patience, self.map_source = val_every, patience, map_source
        self.blur_sigma = float(blur_sigma)
        self.fresh_anomalies, self.lr_schedule = bool(fresh_anomalies), lr_schedule
        self.output_stride = int(output_stride)
        self.net: Optional[MLFFNet] = None
        self.tuned_backbone: Optional[torch.nn.Module] = None

    # ---- network and scoring -------------------------------------------------------------
    @property
    def uses_score_map(self) -> bool:
        return self.map_source == "score" or (self.map_source == "auto" and self.score_weight > 0)

    def _build_net(self, low_channels: int, high_channels: int) -> MLFFNet:
        torch.manual_seed(self.seed)
        return MLFFNet(
            low_channels, high_channels, self.width, self.feature_dim, self.texture, self.scconv,
            self.tem_levels, self.ptfem_levels, self.pyramid, self.scconv_pooling,
        ).to(self.device)

    def stage_inputs(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Images on the device -> (low-level input, stage-3 input) from the frozen or tuned backbone."""
        if self.tuned_backbone is not None:
            return split_stages(self.tuned_backbone(images, STRIDES), self.output_stride)
        return split_stages(self.feature_extractor(STRIDES).run_backbone(images), self.output_stride)

    def grid_maps(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """-> B x 1 x h x w anomaly scores on the feature grid (score head or distance)."""
        phi, s = self.net(low, high)
        return (s if self.uses_score_map else pseudo_huber(phi))[:, None]

    def maps_from_inputs(self, low: torch.Tensor, high: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        grid = self.grid_maps(low, high)
        size = self.preprocess.output_size
        maps = upsample_maps(grid, size, self.blur_sigma)
        return maps.flatten(1).amax(dim=1), maps

    def _predict_tensor(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        self.net.eval()
        low, high = self.stage_inputs(images)
        return self.maps_from_inputs(low, high)

    # ---- data ----------------------------------------------------------------------------
    def _inputs_of(self, images: torch.Tensor, desc: str, progress: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frozen-backbone inputs of in-memory images, stored in float16 on the CPU."""
        lows, highs = [], []
        with torch.no_grad():
            for start in tqdm(range(0, len(images), self.batch_size), desc=desc, disable=not progress, leave=False):
                low, high = self.stage_inputs(images[start : start + self.batch_size].to(self.device))
                lows.append(low.half().cpu())
                highs.append(high.half().cpu())
        return torch.cat(lows), torch.cat(highs)

    def _training_data(self, paths: List[Path], progress: bool) -> Dict[str, Any]:
        images, _, _ = load_images(paths, self.preprocess, on_error="raise")
        normal_src, anomal_src = copy_schedule(len(paths), self.repeat, self.anomaly_ratio, self.seed)
        gen = make_generator(list(self.pseudo_kinds) if len(self.pseudo_kinds) > 1 else self.pseudo_kinds[0])
        t0 = time.perf_counter()
        anomalies, masks = synthesise(images, anomal_src, gen, self.seed + 11)
        synth_seconds = time.perf_counter() - t0
        s = self.preprocess.output_size
        all_masks = torch.cat([torch.zeros(len(images), s, s), masks])
        rows = np.r_[normal_src, len(images) + np.arange(len(anomal_src))]  # one epoch's items
        data: Dict[str, Any] = {"rows": rows, "synth_seconds": synth_seconds, "n_anomalous": len(anomal_src),
                                "n_normal_images": len(images)}
        if self.fresh_anomalies:
            data.update(source_images=images, anomaly_sources=anomal_src, generator=gen)
        if self.finetune_backbone:
            data["images"] = torch.cat([images, anomalies]).mul(255).round().byte()
        else:
            t1 = time.perf_counter()
            extractor = self.feature_extractor(STRIDES)
            low, high = split_stages(extractor(paths, desc="mlff features"), self.output_stride)
            a_low, a_high = self._inputs_of(anomalies, "pseudo-anomaly features", progress)
            data["low"], data["high"] = torch.cat([low.half(), a_low]), torch.cat([high.half(), a_high])
            data["feature_seconds"] = time.perf_counter() - t1
        data["labels"] = self._cell_labels(all_masks)
        return data

    def _cell_labels(self, masks: torch.Tensor) -> torch.Tensor:
        """Pixel masks -> normal / anomalous / ignored labels of the output-grid cells."""
        side = self.preprocess.output_size // self.output_stride
        return cell_labels(masks, (side, side), self.label_threshold)

    def _refresh_anomalies(self, data: Dict[str, Any], epoch: int, progress: bool) -> float:
        """Replace the pseudo-anomalies (images or features, and their cell labels) by a new
        draw for ``epoch``; the normal copies stay. -> seconds spent."""
        t0 = time.perf_counter()
        n = data["n_normal_images"]
        anomalies, masks = synthesise(data["source_images"], data["anomaly_sources"], data["generator"],
                                      self.seed + 11 + 7919 * (epoch - 1))
        if "images" in data:
            data["images"][n:] = anomalies.mul(255).round().byte()
        else:
            a_low, a_high = self._inputs_of(anomalies, f"pseudo-anomalies, epoch {epoch}", progress)
            data["low"][n:], data["high"][n:] = a_low, a_high
        data["labels"][n:] = self._cell_labels(masks)
        return time.perf_counter() - t0

    def _validation_data(self, paths: List[Path], progress: bool) -> Dict[str, Any]:
        images, _, _ = load_images(paths, self.preprocess, on_error="raise")
        kinds = list(self.val_kinds) if len(self.val_kinds) > 1 else self.val_kinds[0]
        gen = make_generator(kinds, textures=self.val_textures)
        sources = np.repeat(np.arange(len(images)), self.val_anomalies_per_image)
        anomalies, masks = synthesise(images, sources, gen, self.seed + 1)
        all_images = torch.cat([images, anomalies])
        keep = masks.flatten(1).amax(dim=1) > 0.5  # a draw that changed nothing is not an anomaly
        st = _VAL_PIXEL_STRIDE
        s = self.preprocess.output_size
        val_masks = torch.cat([torch.zeros(len(images), s, s), masks])[:, ::st, ::st] > 0.5
        labels = np.r_[np.zeros(len(images), int), keep.numpy().astype(int)]
        select = np.r_[np.ones(len(images), bool), keep.numpy()]
        val = {"labels": labels[select], "masks": val_masks.numpy()[select]}
        if self.finetune_backbone:
            val["images"] = all_images[torch.from_numpy(select)]
        else:
            low, high = self._inputs_of(all_images[torch.from_numpy(select)], "validation features", progress)
            val["low"], val["high"] = low, high
        return val

    def _batch_inputs(self, data: Dict[str, Any], rows: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(rows)
        if "images" in data:
            images = data["images"][idx].to(self.device).float().div(255.0)
            return self.stage_inputs(images)
        return data["low"][idx].to(self.device).float(), data["high"][idx].to(self.device).float()

    # ---- losses and validation -----------------------------------------------------------
    def losses(self, phi: torch.Tensor, s: torch.Tensor, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The three terms and their weighted total for one batch."""
        out = {"feature": feature_constraint_loss(pseudo_huber(phi), labels)}
        total = out["feature"]
        if self.score_weight > 0:
            out["score"] = score_constraint_loss(s, labels, self.margin_normal, self.margin_anomalous)
            total = total + self.score_weight * out["score"]
        if self.consistency_weight > 0:
            out["consistency"] = consistency_loss(*patch_view(phi, s, labels, self.consistency_patch))
            total = total + self.consistency_weight * out["consistency"]
        out["total"] = total
        return out

    @torch.no_grad()
    def _validate(self, val: Dict[str, Any]) -> Dict[str, float]:
        self.net.eval()
        scores, maps = [], []
        n = len(val["labels"])
        for start in range(0, n, 32):
            rows = np.arange(start, min(n, start + 32))
            sc, mp = self.maps_from_inputs(*self._batch_inputs(val, rows))
            scores.append(sc.float().cpu())
            maps.append(mp[:, 0, ::_VAL_PIXEL_STRIDE, ::_VAL_PIXEL_STRIDE].float().cpu())
        self.net.train()
        maps_np = torch.cat(maps).numpy()
        i_auroc = image_auroc(val["labels"], torch.cat(scores).numpy())
        p_auroc = pixel_auroc(val["masks"], maps_np)
        pro = aupro(val["masks"], maps_np)
        return {"image_auroc": i_auroc, "pixel_auroc": p_auroc, "aupro": pro, "score": (i_auroc + p_auroc + pro) / 3}

    # ---- training ------------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        groups = [{"params": list(self.net.parameters()), "lr": self.lr}]
        if self.tuned_backbone is not None:
            groups.append({"params": [p for p in self.tuned_backbone.parameters() if p.requires_grad], "lr": self.backbone_lr})
        if self.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        return torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)

    def _fit(self, paths: List[Path], progress: bool) -> None:
        t0 = time.perf_counter()
        train_idx, val_idx = split_validation(len(paths), self.val_fraction, self.seed)
        if self.finetune_backbone:
            self.tuned_backbone = copy.deepcopy(self.backbone).eval()  # BN statistics stay ImageNet's
            for p in self.tuned_backbone.parameters():
                p.requires_grad_(True)
        else:
            self.tuned_backbone = None
        data = self._training_data([paths[i] for i in train_idx], progress)
        val = self._validation_data([paths[i] for i in val_idx], progress) if val_idx is not None else None
        low_ch = sum(self.backbone.stage_channels[s] for s in (4, 8))
        self.net = self._build_net(low_ch, self.backbone.stage_channels[16])
        self.fit_info_.update(
            prepare_seconds=time.perf_counter() - t0,
            synth_seconds=data["synth_seconds"],
            train_images=int(len(train_idx)),
            train_items_per_epoch=int(len(data["rows"])),
            pseudo_anomalies=int(data["n_anomalous"]),
            val_images=0 if val is None else int(len(val["labels"])),
            val_anomalies=0 if val is None else int(np.sum(val["labels"])),
            val_image_names=[] if val_idx is None else [paths[i].name for i in val_idx],
        )
        self._train(data, val, progress)

    def _train(self, data: Dict[str, Any], val: Optional[Dict[str, Any]], progress: bool) -> None:
        t1 = time.perf_counter()
        opt = self._make_optimizer()
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs) if self.lr_schedule == "cosine" else None
        gen = torch.Generator().manual_seed(self.seed + 3)
        rows_all = data["rows"]
        bs = max(2, min(self.train_batch_size, len(rows_all)))
        steps = max(1, len(rows_all) // bs)
        budget = None if self.max_train_minutes is None else 60.0 * self.max_train_minutes
        best = BestEpoch(self.patience * self.val_every)
        curve: List[Dict[str, float]] = []
        stop_reason = "epochs"
        self.net.train()
        bar = tqdm(range(1, self.epochs + 1), desc="mlff", unit="epoch", disable=not progress, leave=False)
        refresh_seconds = 0.0
        for epoch in bar:
            if self.fresh_anomalies and epoch > 1:
                refresh_seconds += self._refresh_anomalies(data, epoch, progress)
            perm = torch.randperm(len(rows_all), generator=gen).numpy()
            sums: Dict[str, float] = {}
            for step in range(steps):
                rows = rows_all[perm[step * bs : (step + 1) * bs]]
                low, high = self._batch_inputs(data, rows)
                labels = data["labels"][torch.from_numpy(rows)].to(self.device)
                phi, s = self.net(low, high)
                terms = self.losses(phi, s, labels)
                opt.zero_grad(set_to_none=True)
                terms["total"].backward()
                opt.step()
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) / steps
            if sched is not None:
                sched.step()
            entry = {"epoch": epoch, **{f"loss_{k}": v for k, v in sums.items()}}
            if val is not None and (epoch % self.val_every == 0 or epoch == self.epochs):
                metrics = self._validate(val)
                entry.update(metrics)
                best.update(epoch, metrics, self._module_state)
                bar.set_postfix(loss=f"{sums['total']:.4f}", val=f"{metrics['score']:.4f}", best=best.epoch)
            entry["seconds"] = time.perf_counter() - t1
            curve.append(entry)
            if val is not None and best.should_stop(epoch):
                stop_reason = "patience"
                break
            if budget is not None and time.perf_counter() - t1 > budget:
                stop_reason = "time budget"
                break
        bar.close()
        chosen, selection = best.restore(self._load_module_state, len(curve))
        self.net.eval()
        self.fit_info_.update(
            train_loop_seconds=time.perf_counter() - t1,
            refresh_seconds=refresh_seconds,
            epochs_run=len(curve),
            chosen_epoch=chosen,
            epochs=chosen,
            selection=selection,
            stop_reason=stop_reason,
            steps_per_epoch=steps,
            map_source="score" if self.uses_score_map else "distance",
            curve=curve,
            val_metrics=best.summary,
        )

    # ---- state ---------------------------------------------------------------------------
    def _module_state(self) -> Dict[str, Any]:
        state = {"net": {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}}
        if self.tuned_backbone is not None:
            state["backbone"] = {k: v.detach().cpu().clone() for k, v in self.tuned_backbone.state_dict().items()}
        return state

    def _load_module_state(self, state: Dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        if "backbone" in state:
            if self.tuned_backbone is None:
                self.tuned_backbone = copy.deepcopy(self.backbone)
            self.tuned_backbone.load_state_dict(state["backbone"])
            self.tuned_backbone.eval()

    def _get_state(self) -> Dict[str, Any]:
        state = self._module_state()
        state["channels"] = (self.net.low_proj[0].in_channels, self.net.high_proj[0].in_channels)
        return state

    def _set_state(self, state: Dict[str, Any]) -> None:
        self.net = self._build_net(*state["channels"])
        self._load_module_state(state)
        self.net.eval()


#: The paper's Table 4 rows as benchmark method variants (one ``defectkit benchmark`` run).
TABLE4_VARIANTS = {
    "baseline fusion, HSC distance only": "mlff[texture=False,scconv=False,score_weight=0.0,consistency_weight=0.0]",
    "+SCConv": "mlff[texture=False,scconv=True,score_weight=0.0,consistency_weight=0.0]",
    "+STLNet": "mlff[texture=True,scconv=True,score_weight=0.0,consistency_weight=0.0]",
    "+score constraint": "mlff[consistency_weight=0.0]",
    "+consistency (full)": "mlff",
}
