"""Blending a source into a normal image through a mask.

One formula for every generator, ``out = (1-M) I + (1-b) M I + b M S`` (RealNet
eq. 3 / PRN eq. 6 with b the source opacity), so masks and opacities mean the same
thing everywhere. The Poisson option (Perez et al. 2003, as in NSA) first makes
the source seamless -- its gradients inside M, the normal image on M's boundary --
and then applies the same formula.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import splu


def alpha_blend(image: np.ndarray, source: np.ndarray, mask: np.ndarray, opacity: float) -> np.ndarray:
    """``(1-M) I + (1-b) M I + b M S`` in float32 (same value range as the inputs)."""
    i = image.astype(np.float32)
    s = source.astype(np.float32)
    m = mask.astype(np.float32)[..., None] if mask.ndim == 2 else mask.astype(np.float32)
    b = np.float32(opacity)
    return (1 - m) * i + (1 - b) * m * i + b * m * s


def poisson_clone(image: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Seamless clone of ``source`` into ``image`` over ``mask > 0.5`` (float32 result).

    Solves the discrete Poisson equation (5-point Laplacian) with the source's
    gradients as guidance and the image as Dirichlet boundary; image borders are
    Neumann. Outside the mask the result equals ``image``.
    """
    img = image.astype(np.float64)
    src = source.astype(np.float64)
    region = mask > 0.5
    out = img.copy()
    if not region.any():
        return out.astype(np.float32)
    h, w = region.shape
    # a component with no pixel outside it to anchor to is ill-posed: copy the source there
    labels, n = ndimage.label(region)
    anchored = ndimage.binary_dilation(~region) & region
    solvable = np.isin(labels, np.unique(labels[anchored])) & region
    out[region & ~solvable] = src[region & ~solvable]
    if not solvable.any():
        return out.astype(np.float32)

    ys, xs = np.nonzero(solvable)
    index = -np.ones((h, w), np.int64)
    index[ys, xs] = np.arange(len(ys))
    n_unknown = len(ys)
    rows, cols, vals = [np.arange(n_unknown)], [np.arange(n_unknown)], []
    diag = np.zeros(n_unknown)
    rhs = np.zeros((n_unknown, img.shape[2]))
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        p = np.nonzero(inside)[0]
        qy, qx = ny[p], nx[p]
        diag[p] += 1
        rhs[p] += src[ys[p], xs[p]] - src[qy, qx]  # guidance: source gradient
        q = index[qy, qx]
        unknown = q >= 0
        rows.append(p[unknown])
        cols.append(q[unknown])
        vals.append(-np.ones(unknown.sum()))
        rhs[p[~unknown]] += img[qy[~unknown], qx[~unknown]]  # Dirichlet boundary: the normal image
    a = sparse.csc_matrix(
        (np.concatenate([diag] + vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_unknown, n_unknown)
    )
    solution = splu(a).solve(rhs)
    out[ys, xs] = solution
    return out.astype(np.float32)


def blend(image: np.ndarray, source: np.ndarray, mask: np.ndarray, opacity: float, mode: str = "alpha") -> np.ndarray:
    """Blend and return uint8 (rounded, clipped). ``mode``: "alpha" or "poisson"."""
    if mode == "poisson":
        source = poisson_clone(image, source, mask)
    elif mode != "alpha":
        raise ValueError(f"unknown blend mode {mode!r} (use 'alpha' or 'poisson')")
    return np.clip(np.rint(alpha_blend(image, source, mask, opacity)), 0, 255).astype(np.uint8)
