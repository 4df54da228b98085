"""benchmarks/alignment.py: the shift convention and that a known map offset is found again."""

import importlib.util
from pathlib import Path

import numpy as np
from scipy import ndimage

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "alignment.py"
_spec = importlib.util.spec_from_file_location("alignment_benchmark", _PATH)
alignment = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(alignment)


def test_shift_moves_content_by_dy_dx_with_edge_replication():
    maps = np.arange(2 * 6 * 7, dtype=np.float32).reshape(2, 6, 7)
    padded = np.pad(maps, ((0, 0), (3, 3), (3, 3)), mode="edge")
    out = alignment.shift_maps(maps, 2, -1, padded, 3)
    assert out.shape == maps.shape
    assert np.array_equal(out[:, 2:, :-1], maps[:, :-2, 1:])  # out[y, x] = maps[y - 2, x + 1]
    assert np.array_equal(out[:, 0], np.concatenate([maps[:, 0, 1:], maps[:, 0, -1:]], axis=1))  # top edge replicated


def test_grid_offsets_cover_the_inner_square_and_the_axes_and_diagonals_beyond():
    offsets = set(alignment.grid_offsets(radius=5, inner=2))
    assert {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)} <= offsets
    assert {(5, 5), (-5, 5), (5, 0), (0, -5), (-4, -4)} <= offsets
    assert (4, 3) not in offsets and len(offsets) == 25 + 3 * 8


def test_a_map_displaced_from_its_masks_is_best_shifted_back():
    rng = np.random.default_rng(0)
    masks = np.zeros((6, 64, 64), bool)
    for m in masks[2:]:
        y, x = rng.integers(8, 44, size=2)
        m[y : y + 12, x : x + 10] = True
    evidence = ndimage.gaussian_filter(masks.astype(np.float32), sigma=(0, 2, 2)) + 0.05 * rng.random(masks.shape)
    displaced = np.roll(evidence, shift=(-3, 2), axis=(1, 2))  # the map sits 3 px up and 2 px right
    rows = alignment.shift_grid(displaced.astype(np.float32), masks, alignment.grid_offsets(4, 4))
    best = alignment.best_shift(rows, "aupro")
    assert (best["dy"], best["dx"]) == (3, -2)
    zero = next(r for r in rows if (r["dy"], r["dx"]) == (0, 0))
    assert best["pixel_auroc"] > zero["pixel_auroc"]
