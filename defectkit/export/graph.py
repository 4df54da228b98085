"""A fitted model's whole scoring as one torch module: the graph that goes into the ONNX file.

Input: ``image`` N x 3 x S x S RGB in [0, 1] at the model's resolution (the runtime does
the decode and resize, numpy + Pillow, exactly as training did). ImageNet normalisation
sits in the backbone, so it is inside the graph; so are the head, the map upsampling and
blur, and the image score. Outputs: ``score`` N and ``anomaly_map`` N x S x S, raw (same
scale as ``model.predict``).

A ``resize="keep"`` model's graph takes a second input, ``valid`` N x S x S (1.0 on real
pixels, 0.0 on padding), and does what ``AnomalyModel.predict`` does with it: the score is
computed over real pixels only and the padding of the map is floored.

Most methods already score a batch with plain tensor operations (``_predict_tensor``), so
their graph simply calls it. PatchCore searches its memory bank with faiss, which no graph
holds; :class:`PatchCoreGraph` computes the same exact nearest neighbours as squared
distances by one matrix product, and the bank's own neighbour lists (for the paper's
reweighting) are read off a table computed once at export with the model's own search.
"""

from __future__ import annotations

from typing import Tuple

import torch

from ..features import upsample_maps
from ..models.base import AnomalyModel, floor_outside, patch_centres
from .rewrites import graph_form

#: patches per image whose bank distances one product computes (see PatchCoreGraph)
SEARCH_CHUNK = 16


class TiledModelError(ValueError):
    """Tiled models are not exported (their windows are stitched by Python code, not a graph)."""


def check_exportable(model: AnomalyModel) -> None:
    """ValueError naming what prevents ``model`` from being exported."""
    if not model.fitted_:
        raise ValueError("the model is not fitted")
    if model.tiling_ is not None:
        raise TiledModelError(
            f"this {model.method} model is tiled (tile_size={model.tile_size}): its windows are cut and their maps "
            "stitched by defectkit's Python code, which an ONNX graph does not hold, so tiled models are not "
            "exported; predict with the .pt file, or train without --tile to export"
        )


class ScoringGraph(torch.nn.Module):
    """``model._predict_tensor`` (or ``_predict_valid`` + floored padding) as a module."""

    def __init__(self, model: AnomalyModel):
        super().__init__()
        check_exportable(model)
        # the networks in their export forms (copies; ``model`` itself is left as it is)
        self.model = graph_form(model)
        self.keep = model.preprocess.resize == "keep"
        for module in _modules_of(self.model):
            module.eval()

    def _square(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.model._predict_tensor(image)

    def _valid(self, image: torch.Tensor, valid: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.model._predict_valid(image, valid)

    def forward(self, image: torch.Tensor, valid: torch.Tensor = None):
        if valid is None:
            scores, maps = self._square(image)
        else:
            mask = valid > 0.5
            scores, maps = self._valid(image, mask)
            maps = floor_outside(maps, mask)
        return scores.float(), maps[:, 0].float()


class PatchCoreGraph(ScoringGraph):
    """PatchCore with in-graph exact nearest-neighbour search over its memory bank.

    ``|f - m|^2 = |f|^2 - 2 f.m + |m|^2`` for all bank entries at once (the same expansion
    faiss's exact flat index uses; ``|f|^2`` is left out, it does not change the argmin)
    gives the nearest entry of each patch by matrix products; its distance is then computed
    directly as ``|f - m|``, which the expansion gets wrong near 0 in float32. The products
    run over ``SEARCH_CHUNK`` patches of every image at a time, so each distance block
    (batch 8: 128 x M floats, 8 MB at M = 16384) stays in cache instead of one
    N*h*w x M block going through memory (537 MB at batch 8). The reweighting needs
    the ``num_neighbours`` bank entries nearest to the bank entry m*; they depend only on
    the bank, so they are computed once here (``neighbours``, M x k) with the model's
    own search, exactly what ``PatchCore.reweighted_max`` asks it at predict time.
    """

    def __init__(self, model: AnomalyModel):
        super().__init__(model)
        bank = model.memory_bank_.float().cpu().contiguous()
        self.register_buffer("bank", bank)
        self.register_buffer("bank_sq", (bank * bank).sum(1))
        k = min(int(model.num_neighbours), bank.shape[0])
        self.k = k
        if k > 1:
            _, neighbours = model.index_.search(bank, k=k)
            self.register_buffer("neighbours", neighbours.long().cpu())

    def _scores(self, image: torch.Tensor, valid=None) -> Tuple[torch.Tensor, torch.Tensor]:
        model = self.model
        feats = model.patch_features(model.feature_extractor(model.strides).run_backbone(image))
        n, h, w, d = feats.shape
        flat = feats.reshape(n * h * w, d)
        nn_idx = self._nearest(feats.reshape(n, h * w, d)).reshape(n * h * w)
        # the distance to the chosen entry computed directly: the expansion loses precision near 0
        patch_scores = torch.linalg.vector_norm(flat - self.bank[nn_idx], dim=1).reshape(n, h * w)
        maps = upsample_maps(patch_scores.reshape(n, 1, h, w), model.preprocess.output_size, model.blur_sigma)
        ranked = patch_scores if valid is None else patch_scores.masked_fill(~patch_centres(valid, h, w), float("-inf"))
        best = ranked.argmax(dim=1)
        s_star = patch_scores.gather(1, best[:, None])[:, 0]
        if self.k <= 1:
            return s_star, maps
        feats_n = flat.reshape(n, h * w, d)
        worst = feats_n.gather(1, best[:, None, None].expand(n, 1, d))[:, 0]  # N x D
        m_star = nn_idx.reshape(n, h * w).gather(1, best[:, None])[:, 0]  # N
        support = self.neighbours[m_star]  # N x k, m* first
        dist = torch.linalg.vector_norm(worst[:, None, :] - self.bank[support], dim=-1)
        weight = 1.0 - torch.softmax(dist, dim=1)[:, 0]
        return weight * s_star, maps

    def _nearest(self, feats: torch.Tensor) -> torch.Tensor:
        """N x P x D patch features -> N x P index of the nearest bank entry.

        ``|m|^2 - 2 f.m`` has the argmin of ``|f - m|^2`` (``|f|^2`` is the same for every m);
        the -2 scales the small feature chunk, not the product (exact: a power of 2)."""
        bank_t = self.bank.T
        chunks = (feats * -2.0).split(SEARCH_CHUNK, dim=1)
        return torch.cat([(chunk @ bank_t + self.bank_sq).argmin(dim=2) for chunk in chunks], dim=1)

    def _square(self, image):
        return self._scores(image)

    def _valid(self, image, valid):
        return self._scores(image, valid)


def scoring_graph(model: AnomalyModel) -> ScoringGraph:
    """The export graph of ``model`` (PatchCore's own, else the generic one)."""
    if model.method == "patchcore":
        return PatchCoreGraph(model)
    return ScoringGraph(model)


def _modules_of(model: AnomalyModel):
    """The torch modules a fitted model holds (its networks and the backbone)."""
    found = [model.backbone_]
    for value in vars(model).values():
        if isinstance(value, torch.nn.Module):
            found.append(value)
    return found
