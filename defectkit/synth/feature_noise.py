"""Feature-space anomalies (SimpleNet): i.i.d. Gaussian noise added to adapted features.

SimpleNet never synthesises images; its "anomalous" features are q + eps with
eps ~ N(0, sigma^2), sigma = 0.015 in the paper.
"""

from __future__ import annotations

import torch


def add_feature_noise(
    features: torch.Tensor, sigma: float = 0.015, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``features + N(0, sigma^2)`` per entry (same shape, dtype, device); a seeded
    ``generator`` makes it reproducible."""
    if sigma < 0:
        raise ValueError("sigma must be >= 0")
    noise = torch.randn(
        features.shape,
        generator=generator,
        dtype=features.dtype,
        device=generator.device if generator is not None else features.device,
    )
    return features + sigma * noise.to(features.device)
