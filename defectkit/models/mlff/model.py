"""MLFF, the multi-level feature fusion network of seed 002, supervised by pseudo-anomalies.

Backbone stages 1-3; STLNet's texture branch (TEM + PTFEM) on stages 1+2; SCNet's
self-calibrated convolution on stage 3; fusion into a per-pixel feature ``phi`` and a
linear score ``s`` (``mlff/net.py``). The training set is repeated ``repeat`` times and a
fraction ``anomaly_ratio`` of the copies is turned into pseudo-anomalies (FCDD confetti
noise and CutPaste, each with its mask). Losses (``mlff/losses.py``): class-balanced
hypersphere loss on the pseudo-Huber distance, score constraint on ``s``, and the
feature-score consistency on normal patches. Map = ``s`` upsampled bilinearly; image
score = max of the map.

The paper lost its equations; docs/methods/mlff.md reconstructs them from FCDD, STLNet and SCNet,
and docs/methods/mlff.md lists every deviation. The epoch kept is chosen on a validation
split of held-out normal training images plus synthetic anomalies of kinds *other* than
the training pseudo-anomalies (HOA by default), never on test images (docs/protocol.md#validation-split).

The rows of the paper's Table 4 are parameter switches; ``TABLE4_VARIANTS`` lists them
as method variants, so one ``defectkit benchmark --methods ...`` run gives the whole table.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ...data.batches import load_images
from ...features import upsample_maps
from ...synth import make_generator
from ...synth.batch import synthesise
from ...synth.validation import masked_anomalies
from ...utils.progress import progress as progress_bar
from ..base import AnomalyModel
from ..components.bounds import check_bounds
from ..components.training import check_loop_params, train_epochs
from ..components.validation import family_scores, subsample, validation_scores
from ..components.validation_split import ValidationAnomalies, check_val_split, validation_anomalies
from ..registry import register_method
from .losses import (
    cell_labels,
    consistency_loss,
    feature_constraint_loss,
    patch_view,
    pseudo_huber,
    score_constraint_loss,
)
from .net import OUTPUT_STRIDES, STRIDES, MLFFNet, split_stages

MAP_SOURCES = ("auto", "score", "distance")
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "cosine")
#: validation pixel metrics read every 2nd pixel per axis (maps are bilinear upsamplings
#: of a stride-8 or stride-4 grid, so a quarter of the pixels loses little and is 4x cheaper).


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
    Selection: ``val_fraction`` of the normal images held out, anomalies made from them by
    ``val_split`` (``models.components.validation_split``): "suite" (default) the shared
    ``synth.validation_suite``, ``val_anomalies_per_image`` per family (at least 24), with
    per-family metrics of the kept epoch in ``fit_info_["val_families"]``; "own"
    ``val_anomalies_per_image`` anomalies per image of ``val_kinds``. ``val_textures``: the
    texture folder of either ("dtd", the suite's texture family; None: the default one).
    The epoch with the best mean of I-AUROC, P-AUROC and AUPRO is kept; training
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
    #: files written before ``output_stride`` existed were trained on the stride-8 grid, and
    #: files written before ``val_split`` existed chose their epoch on ``val_kinds`` ("own")
    legacy_params = {"output_stride": 8, "val_split": "own"}

    def __init__(
        self,
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
        val_split: str = "suite",
        val_textures: Optional[str] = None,
        val_every: int = 1,
        patience: int = 5,
        map_source: str = "auto",
        blur_sigma: float = 0.0,
        fresh_anomalies: bool = False,
        lr_schedule: str = "constant",
        output_stride: int = 4,
        **base: Any,
    ):
        super().__init__(**base)
        self.texture, self.scconv = texture, scconv
        self.width, self.feature_dim = width, feature_dim
        self.tem_levels, self.ptfem_levels = tem_levels, ptfem_levels
        self.pyramid, self.scconv_pooling = pyramid, scconv_pooling
        self.repeat, self.anomaly_ratio = repeat, anomaly_ratio
        self.pseudo_kinds = pseudo_kinds
        self.label_threshold = label_threshold
        self.score_weight, self.consistency_weight = score_weight, consistency_weight
        self.margin_normal, self.margin_anomalous = margin_normal, margin_anomalous
        self.consistency_patch = consistency_patch
        self.optimizer, self.lr, self.weight_decay = optimizer, lr, weight_decay
        self.train_batch_size, self.epochs, self.max_train_minutes = train_batch_size, epochs, max_train_minutes
        self.finetune_backbone, self.backbone_lr = finetune_backbone, backbone_lr
        self.val_fraction, self.val_anomalies_per_image = val_fraction, val_anomalies_per_image
        self.val_kinds = val_kinds
        self.val_split = val_split
        self.val_textures = val_textures
        self.val_every, self.patience, self.map_source = val_every, patience, map_source
        self.blur_sigma = blur_sigma
        self.fresh_anomalies, self.lr_schedule = fresh_anomalies, lr_schedule
        self.output_stride = output_stride

    def check_params(self) -> None:
        super().check_params()
        check_loop_params(self)
        check_val_split(self.val_split)
        if self.map_source not in MAP_SOURCES:
            raise ValueError(f"map_source must be one of {MAP_SOURCES}, got {self.map_source!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {self.output_stride!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.anomaly_ratio <= 1.0 or self.repeat < 1 or self.epochs < 1:
            raise ValueError("anomaly_ratio must be in [0, 1], repeat and epochs >= 1")
        if self.blur_sigma < 0:
            raise ValueError(f"blur_sigma must be >= 0 (0: no smoothing), got {self.blur_sigma}")
        check_bounds(
            self,
            width=">= 1",
            feature_dim=">= 1",
            tem_levels=">= 1",
            ptfem_levels=">= 1",
            scconv_pooling=">= 1",
            label_threshold="[0, 1)",
            score_weight=">= 0",
            consistency_weight=">= 0",
            consistency_patch=">= 1",
            lr="> 0",
            weight_decay=">= 0",
            train_batch_size=">= 1",
            max_train_minutes="> 0",
            backbone_lr="> 0",
            val_anomalies_per_image=">= 1",
        )
        if any(p < 1 for p in self.pyramid):
            raise ValueError(f"pyramid must hold ints >= 1, got {self.pyramid!r}")
        size = self.preprocess.output_size
        if size % self.output_stride:
            raise ValueError(
                f"mlff needs a model input that is a multiple of output_stride {self.output_stride} "
                f"(its feature grids must line up), got {size} px"
            )

    @property
    def feature_strides(self) -> Tuple[int, ...]:
        return STRIDES

    @staticmethod
    def _kinds(kinds) -> Any:
        """A kind name, or a list of names for an even mix (what ``make_generator`` takes)."""
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        return kinds if len(kinds) > 1 else kinds[0]

    # ---- network and scoring -------------------------------------------------------------
    @property
    def uses_score_map(self) -> bool:
        return self.map_source == "score" or (self.map_source == "auto" and self.score_weight > 0)

    def _build_net(self, low_channels: int, high_channels: int) -> MLFFNet:
        torch.manual_seed(self.seed)
        return MLFFNet(
            low_channels,
            high_channels,
            self.width,
            self.feature_dim,
            self.texture,
            self.scconv,
            self.tem_levels,
            self.ptfem_levels,
            self.pyramid,
            self.scconv_pooling,
        ).to(self.device_)

    def stage_inputs(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Images on the device -> (low-level input, stage-3 input) from the frozen or tuned backbone."""
        if getattr(self, "tuned_backbone_", None) is not None:
            return split_stages(self.tuned_backbone_(images, STRIDES), self.output_stride)
        return split_stages(self.feature_extractor(STRIDES).run_backbone(images), self.output_stride)

    def grid_maps(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """-> B x 1 x h x w anomaly scores on the feature grid (score head or distance)."""
        phi, s = self.net_(low, high)
        return (s if self.uses_score_map else pseudo_huber(phi))[:, None]

    def maps_from_inputs(self, low: torch.Tensor, high: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        grid = self.grid_maps(low, high)
        size = self.preprocess.output_size
        maps = upsample_maps(grid, size, self.blur_sigma)
        return maps.flatten(1).amax(dim=1), maps

    def _predict_tensor(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        self.net_.eval()
        low, high = self.stage_inputs(images)
        return self.maps_from_inputs(low, high)

    # ---- data ----------------------------------------------------------------------------
    def _inputs_of(self, images: torch.Tensor, desc: str, progress: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frozen-backbone inputs of in-memory images (float in [0, 1], or uint8 turned into
        float one batch at a time), stored in float16 on the CPU."""
        lows, highs = [], []
        with torch.no_grad():
            with progress_bar(
                range(0, len(images), self.batch_size), desc=desc, unit="batch", enabled=progress
            ) as starts:
                for start in starts:
                    batch = images[start : start + self.batch_size]
                    if batch.dtype == torch.uint8:
                        batch = batch.float() / 255.0
                    low, high = self.stage_inputs(batch.to(self.device_))
                    lows.append(low.half().cpu())
                    highs.append(high.half().cpu())
        return torch.cat(lows), torch.cat(highs)

    def _training_data(self, paths: List[Path], progress: bool) -> Dict[str, Any]:
        images, _, _ = load_images(paths, self.preprocess, on_error="raise")
        normal_src, anomal_src = copy_schedule(len(paths), self.repeat, self.anomaly_ratio, self.seed)
        gen = make_generator(self._kinds(self.pseudo_kinds))
        t0 = time.perf_counter()
        # uint8 (a quarter of the float size) unless fine-tuning needs them as float images
        anomalies, masks = synthesise(images, anomal_src, gen, self.seed + 11, as_uint8=not self.finetune_backbone)
        synth_seconds = time.perf_counter() - t0
        s = self.preprocess.output_size
        rows = np.r_[normal_src, len(images) + np.arange(len(anomal_src))]  # one epoch's items
        data: Dict[str, Any] = {
            "rows": rows,
            "synth_seconds": synth_seconds,
            "n_anomalous": len(anomal_src),
            "n_normal_images": len(images),
        }
        # the cell labels first, so the full-size masks are freed before the features are held
        data["labels"] = self._cell_labels(torch.cat([torch.zeros(len(images), s, s), masks]))
        del masks
        if self.fresh_anomalies:
            data.update(source_images=images, anomaly_sources=anomal_src, generator=gen)
        if self.finetune_backbone:
            data["images"] = torch.cat([images, anomalies]).mul(255).round().byte()
        else:
            del images  # the features are read from the files; kept in data only for fresh anomalies
            t1 = time.perf_counter()
            extractor = self.feature_extractor(STRIDES)
            low, high = split_stages(extractor(paths, desc="mlff features"), self.output_stride)
            a_low, a_high = self._inputs_of(anomalies, "pseudo-anomaly features", progress)
            data["low"], data["high"] = torch.cat([low.half(), a_low]), torch.cat([high.half(), a_high])
            data["feature_seconds"] = time.perf_counter() - t1
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
        anomalies, masks = synthesise(
            data["source_images"],
            data["anomaly_sources"],
            data["generator"],
            self.seed + 11 + 7919 * (epoch - 1),
            as_uint8="images" not in data,
        )
        if "images" in data:
            data["images"][n:] = anomalies.mul(255).round().byte()
        else:
            a_low, a_high = self._inputs_of(anomalies, f"pseudo-anomalies, epoch {epoch}", progress)
            data["low"][n:], data["high"][n:] = a_low, a_high
        data["labels"][n:] = self._cell_labels(masks)
        return time.perf_counter() - t0

    def validation_anomalies(self, images: torch.Tensor) -> ValidationAnomalies:
        """The ``val_split`` anomalies made from held-out normal ``images`` (kinds other than the training ones)."""

        def own() -> Tuple[torch.Tensor, torch.Tensor, str]:
            anomalies, masks, keep = masked_anomalies(
                images, self.val_anomalies_per_image, self.val_kinds, self.seed + 1, textures=self.val_textures
            )
            kept = torch.from_numpy(keep)  # a draw that changed nothing is no anomaly
            kinds = [self.val_kinds] if isinstance(self.val_kinds, str) else list(self.val_kinds)
            return anomalies[kept], masks[kept], "defectkit.synth:" + "+".join(kinds)

        return validation_anomalies(
            images, self.val_split, own, self.val_anomalies_per_image, seed=self.seed + 1, textures=self.val_textures
        )

    def _validation_data(self, paths: List[Path], progress: bool) -> Dict[str, Any]:
        images, _, _ = load_images(paths, self.preprocess, on_error="raise")
        made = self.validation_anomalies(images)
        made.record(self.fit_info_)
        all_images = torch.cat([images, made.images.to(images.dtype)])
        s = self.preprocess.output_size
        val_masks = subsample(torch.cat([torch.zeros(len(images), s, s, dtype=torch.bool), made.masks]))
        val = {
            "labels": np.r_[np.zeros(len(images), int), np.ones(len(made.images), int)],
            "masks": val_masks.numpy(),
            "families": made.row_families(len(images)),
        }
        if self.finetune_backbone:  # 8-bit, as the training images: _batch_inputs divides by 255
            val["images"] = all_images.mul(255).round().byte()
        else:
            val["low"], val["high"] = self._inputs_of(all_images, "validation features", progress)
        return val

    def _batch_inputs(self, data: Dict[str, Any], rows: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(rows)
        if "images" in data:
            images = data["images"][idx].to(self.device_).float().div(255.0)
            return self.stage_inputs(images)
        return data["low"][idx].to(self.device_).float(), data["high"][idx].to(self.device_).float()

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
    def _validate(self, val: Dict[str, Any], per_family: bool = False) -> Any:
        self.net_.eval()
        scores, maps = [], []
        n = len(val["labels"])
        for start in range(0, n, 32):
            rows = np.arange(start, min(n, start + 32))
            sc, mp = self.maps_from_inputs(*self._batch_inputs(val, rows))
            scores.append(sc.float().cpu())
            maps.append(subsample(mp[:, 0]).float().cpu())
        self.net_.train()
        rows = (val["labels"], torch.cat(scores).numpy(), val["masks"], torch.cat(maps).numpy())
        return family_scores(*rows, val["families"]) if per_family else validation_scores(*rows)

    # ---- training ------------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        groups = [{"params": list(self.net_.parameters()), "lr": self.lr}]
        if self.tuned_backbone_ is not None:
            groups.append(
                {"params": [p for p in self.tuned_backbone_.parameters() if p.requires_grad], "lr": self.backbone_lr}
            )
        if self.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        return torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)

    def _fit(self, paths: List[Path], progress: bool) -> None:
        t0 = time.perf_counter()
        train_idx, val_idx = self._hold_out(paths, self.val_fraction)
        if self.finetune_backbone:
            self.tuned_backbone_ = copy.deepcopy(self.backbone_).eval()  # BN statistics stay ImageNet's
            for p in self.tuned_backbone_.parameters():
                p.requires_grad_(True)
        else:
            self.tuned_backbone_ = None
        data = self._training_data([paths[i] for i in train_idx], progress)
        val = self._validation_data([paths[i] for i in val_idx], progress) if val_idx is not None else None
        low_ch = sum(self.backbone_.stage_channels[s] for s in (4, 8))
        self.net_ = self._build_net(low_ch, self.backbone_.stage_channels[16])
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
        opt = self._make_optimizer()
        sched = (
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs) if self.lr_schedule == "cosine" else None
        )
        gen = torch.Generator().manual_seed(self.seed + 3)
        rows_all = data["rows"]
        bs = max(2, min(self.train_batch_size, len(rows_all)))
        steps = max(1, len(rows_all) // bs)
        refresh_seconds = [0.0]
        self.net_.train()

        def run_epoch(epoch: int) -> Dict[str, float]:
            if self.fresh_anomalies and epoch > 1:
                refresh_seconds[0] += self._refresh_anomalies(data, epoch, progress)
            perm = torch.randperm(len(rows_all), generator=gen).numpy()
            sums: Dict[str, float] = {}
            for step in range(steps):
                rows = rows_all[perm[step * bs : (step + 1) * bs]]
                low, high = self._batch_inputs(data, rows)
                labels = data["labels"][torch.from_numpy(rows)].to(self.device_)
                phi, s = self.net_(low, high)
                terms = self.losses(phi, s, labels)
                opt.zero_grad(set_to_none=True)
                terms["total"].backward()
                opt.step()
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) / steps
            if sched is not None:
                sched.step()
            return {f"loss_{k}": v for k, v in sums.items()}

        summary = train_epochs(
            run_epoch,
            None if val is None else (lambda: self._validate(val)),
            self._module_state,
            self._load_module_state,
            epochs=self.epochs,
            val_every=self.val_every,
            patience=self.patience,
            max_seconds=None if self.max_train_minutes is None else 60.0 * self.max_train_minutes,
            desc="mlff",
            progress=progress,
        )
        if val is not None and val.get("families") is not None:  # the kept epoch, family by family
            self.fit_info_["val_families"] = self._validate(val, per_family=True)
        self.net_.eval()
        self.fit_info_.update(
            summary,
            refresh_seconds=refresh_seconds[0],
            steps_per_epoch=steps,
            map_source="score" if self.uses_score_map else "distance",
        )

    # ---- state ---------------------------------------------------------------------------
    def _module_state(self) -> Dict[str, Any]:
        state = {"net": {k: v.detach().cpu().clone() for k, v in self.net_.state_dict().items()}}
        if self.tuned_backbone_ is not None:
            state["backbone"] = {k: v.detach().cpu().clone() for k, v in self.tuned_backbone_.state_dict().items()}
        return state

    def _load_module_state(self, state: Dict[str, Any]) -> None:
        self.net_.load_state_dict(state["net"])
        if "backbone" in state:
            if self.tuned_backbone_ is None:
                self.tuned_backbone_ = copy.deepcopy(self.backbone_)
            self.tuned_backbone_.load_state_dict(state["backbone"])
            self.tuned_backbone_.eval()

    def _get_state(self) -> Dict[str, Any]:
        state = self._module_state()
        state["channels"] = (self.net_.low_proj[0].in_channels, self.net_.high_proj[0].in_channels)
        return state

    def _set_state(self, state: Dict[str, Any]) -> None:
        self.tuned_backbone_ = None
        self.net_ = self._build_net(*state["channels"])
        self._load_module_state(state)
        self.net_.eval()


#: The paper's Table 4 rows as benchmark method variants (one ``defectkit benchmark`` run).
TABLE4_VARIANTS = {
    "baseline fusion, HSC distance only": "mlff[texture=False,scconv=False,score_weight=0.0,consistency_weight=0.0]",
    "+SCConv": "mlff[texture=False,scconv=True,score_weight=0.0,consistency_weight=0.0]",
    "+STLNet": "mlff[texture=True,scconv=True,score_weight=0.0,consistency_weight=0.0]",
    "+score constraint": "mlff[consistency_weight=0.0]",
    "+consistency (full)": "mlff",
}
