"""On-disk cache of SDAS samples, so methods draw from a pool instead of running the sampler.

Layout: ``<root>/<key>/NNNNNN.png`` plus ``index.json``; the key is the model's
weights hash and the sampling settings, so retraining never serves stale samples.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ...utils.atomic import atomic_write_bytes
from .model import SDASModel

POOL_FORMAT = "defectkit.sdas_pool"
POOL_VERSION = 1


def _atomic_write(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data)


class SamplePool:
    """SDAS samples for one model, generated on demand and kept as PNGs.

    ``model`` may be an :class:`SDASModel` or a checkpoint path. Sample i is
    deterministic (batch seeds derive from ``seed`` and the batch start), and its
    strength s ~ U[strength] is recorded in the index.
    """

    def __init__(self, root, model, strength=(0.1, 0.2), steps: int = 20, seed: int = 0):
        self.model = model if isinstance(model, SDASModel) else SDASModel.load(model)
        self.model_hash = self.model.weights_hash()
        lo, hi = (float(strength), float(strength)) if np.isscalar(strength) else map(float, strength)
        self.strength = (lo, hi)
        self.steps = int(steps)
        self.seed = int(seed)
        self.dir = Path(root) / f"{self.model_hash[:16]}_s{lo:g}-{hi:g}_k{self.steps}_seed{self.seed}"
        self.index_path = self.dir / "index.json"
        self._cache: dict[int, np.ndarray] = {}
        self.entries: list[dict] = []
        if self.index_path.exists():
            index = json.loads(self.index_path.read_text())
            if (
                index.get("format") == POOL_FORMAT
                and index.get("version") == POOL_VERSION
                and index.get("model_hash") == self.model_hash
            ):
                self.entries = [e for e in index["entries"] if (self.dir / e["file"]).exists()]

    def __len__(self) -> int:
        return len(self.entries)

    def ensure(self, n: int, batch_size: int = 32, progress: bool = False) -> "SamplePool":
        """Generate samples until the pool holds at least ``n``; returns self."""
        self.dir.mkdir(parents=True, exist_ok=True)
        while len(self.entries) < n:
            start = len(self.entries)
            count = min(batch_size, n - start)
            batch_seed = self.seed * 1_000_003 + start
            lo, hi = self.strength
            s = np.random.default_rng(batch_seed).uniform(lo, hi, count).astype(np.float32)
            images = self.model.sample(
                count, strength=s, seed=batch_seed, steps=self.steps, batch_size=count, progress=progress
            )
            for j, image in enumerate(images):
                name = f"{start + j:06d}.png"
                buf = _png_bytes(image)
                _atomic_write(self.dir / name, buf)
                self.entries.append({"file": name, "strength": float(s[j])})
            self._write_index()
        return self

    def _write_index(self) -> None:
        index = {
            "format": POOL_FORMAT,
            "version": POOL_VERSION,
            "model_hash": self.model_hash,
            "image_size": self.model.image_size,
            "steps": self.steps,
            "strength": list(self.strength),
            "seed": self.seed,
            "entries": self.entries,
        }
        _atomic_write(self.index_path, json.dumps(index, indent=1).encode())

    def __getitem__(self, i: int) -> np.ndarray:
        if i not in self._cache:
            with Image.open(self.dir / self.entries[i]["file"]) as im:
                self._cache[i] = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
        return self._cache[i]

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """A random cached sample (uint8, model resolution)."""
        if not self.entries:
            raise RuntimeError("empty SDAS pool: call ensure(n) first")
        return self[int(rng.integers(len(self.entries)))]


def _png_bytes(image: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()
