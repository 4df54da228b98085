"""The export graph's chunked nearest-neighbour search finds what a brute-force search finds."""

from __future__ import annotations

import types

import pytest
import torch

from defectkit.export.graph import SEARCH_CHUNK, PatchCoreGraph


@pytest.mark.parametrize("patches", [SEARCH_CHUNK * 3, SEARCH_CHUNK * 2 + 5, 3])
def test_chunked_search_matches_brute_force(patches):
    gen = torch.Generator().manual_seed(0)
    bank = torch.randn(300, 24, generator=gen)
    feats = torch.randn(4, patches, 24, generator=gen)
    graph = types.SimpleNamespace(bank=bank, bank_sq=(bank * bank).sum(1))
    found = PatchCoreGraph._nearest(graph, feats)
    expected = torch.cdist(feats.reshape(-1, 24), bank).argmin(dim=1).reshape(4, patches)
    assert found.shape == (4, patches)
    assert torch.equal(found, expected)
