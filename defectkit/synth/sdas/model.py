"""SDAS model bundle: U-Net + schedule, versioned atomic save/load, strength sampling."""

from __future__ import annotations

import copy
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ...utils.atomic import atomic_write_bytes
from .diffusion import GaussianDiffusion
from .unet import UNet, UNetConfig

FORMAT = "defectkit.sdas"
FORMAT_VERSION = 1


@dataclass
class SDASModel:
    """A trained (or fresh) SDAS diffusion model.

    ``net`` holds the EMA weights used for sampling; ``info`` records how it was
    trained (steps, seconds, data) so saved files are self-describing.
    """

    net: UNet
    schedule: str = "cosine"
    num_timesteps: int = 1000
    info: dict = field(default_factory=dict)

    @classmethod
    def create(
        cls, config: Optional[UNetConfig] = None, schedule: str = "cosine", num_timesteps: int = 1000, seed: int = 0
    ) -> "SDASModel":
        torch.manual_seed(seed)
        return cls(UNet(config if config is not None else UNetConfig()), schedule, num_timesteps)

    @property
    def image_size(self) -> int:
        return self.net.config.image_size

    def diffusion(self, sampling_steps=None) -> GaussianDiffusion:
        return GaussianDiffusion.create(self.schedule, self.num_timesteps, sampling_steps)

    # -- persistence ---------------------------------------------------------
    def state(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "config": self.net.config.to_dict(),
            "schedule": self.schedule,
            "num_timesteps": self.num_timesteps,
            "state_dict": self.net.state_dict(),
            "info": self.info,
        }

    def save(self, path) -> str:
        """Write atomically (temp file + os.replace) so a crash never leaves half a file; returns the hash."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(self.state(), buf)
        data = buf.getvalue()
        atomic_write_bytes(path, data)
        return self.weights_hash()

    @classmethod
    def load(cls, path, map_location="cpu") -> "SDASModel":
        state = torch.load(path, map_location=map_location, weights_only=True)
        if state.get("format") != FORMAT:
            raise ValueError(f"{path} is not an SDAS checkpoint")
        if state.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: SDAS format version {state.get('version')}, expected {FORMAT_VERSION}")
        net = UNet(UNetConfig.from_dict(state["config"]))
        net.load_state_dict(state["state_dict"])
        net.eval()
        return cls(net, state["schedule"], state["num_timesteps"], dict(state.get("info", {})))

    def weights_hash(self) -> str:
        """SHA-256 over config + weights: the key for cached sample pools."""
        h = hashlib.sha256()
        h.update(repr((self.net.config.to_dict(), self.schedule, self.num_timesteps)).encode())
        for name, tensor in sorted(self.net.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def copy(self) -> "SDASModel":
        return SDASModel(copy.deepcopy(self.net), self.schedule, self.num_timesteps, dict(self.info))

    # -- sampling ------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self, n: int, strength=0.0, seed: int = 0, steps: int = 20, batch_size: int = 32, progress: bool = False
    ) -> np.ndarray:
        """n samples as uint8 NxHxWx3 at the model's resolution.

        ``strength`` is a float s, a (lo, hi) tuple to draw s ~ U[lo, hi] per sample
        (RealNet uses (0.1, 0.2)), or an array of n per-sample strengths.
        Deterministic for a given seed (and batch size).
        """
        self.net.eval()
        gen = torch.Generator().manual_seed(int(seed))
        if isinstance(strength, (tuple, list)):
            lo, hi = strength
            s_all = lo + (hi - lo) * torch.rand(n, generator=gen)
        elif isinstance(strength, (np.ndarray, torch.Tensor)):
            s_all = torch.as_tensor(np.asarray(strength, dtype=np.float32)).reshape(n)
        else:
            s_all = torch.full((n,), float(strength))
        diffusion = self.diffusion(steps)
        size = self.image_size
        out = []
        for start in range(0, n, batch_size):
            s = s_all[start : start + batch_size]
            x = diffusion.sample(
                self.net, (len(s), self.net.config.in_channels, size, size), s, generator=gen, progress=progress
            )
            out.append(((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, size, size, 3), np.uint8)
