"""Train an SDAS diffusion model on one category's normal images, within a time budget.

Why a time budget rather than epochs: it must fit a 2-core CPU (< 60 min per
category), so training stops at whichever comes first, ``minutes`` or ``max_steps``,
checkpointing atomically on the way so an interrupted run still leaves weights.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ...utils.progress import progress as progress_bar
from ..io import load_image
from .model import SDASModel
from .unet import UNetConfig


def load_training_images(image_paths, size: int) -> torch.Tensor:
    """Images resized to ``size`` as an N x 3 x size x size float tensor in [-1, 1]."""
    arrays = [load_image(p, size) for p in image_paths]
    if not arrays:
        raise ValueError("no training images")
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def train_model(
    model: SDASModel,
    data: torch.Tensor,
    *,
    minutes: float | None = None,
    max_steps: int | None = None,
    batch_size: int = 16,
    lr: float = 3e-4,
    ema_decay: float = 0.999,
    flips: bool = False,
    seed: int = 0,
    out_path=None,
    save_every_s: float = 300.0,
    progress: bool = True,
) -> SDASModel:
    """Train in place on ``data`` (N x 3 x H x W in [-1, 1]); return the EMA model.

    Uniform timestep sampling, AdamW, hybrid loss. ``flips`` adds horizontal and
    vertical flips (only for categories where a flipped image is still normal).
    """
    if minutes is None and max_steps is None:
        raise ValueError("give minutes and/or max_steps")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = model.net.to(memory_format=torch.channels_last)  # ~10% faster convs on CPU
    net.train()
    ema = model.copy()
    ema.net.eval().requires_grad_(False)
    diffusion = model.diffusion()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    deadline = None if minutes is None else time.monotonic() + 60.0 * minutes
    start = last_save = time.monotonic()
    step = 0
    losses = []
    with progress_bar(total=max_steps, desc="SDAS training", enabled=progress, leave=True, mininterval=5.0) as bar:
        while (max_steps is None or step < max_steps) and (deadline is None or time.monotonic() < deadline):
            idx = torch.randint(0, len(data), (batch_size,), generator=gen)
            x0 = data[idx.to(data.device)].contiguous(memory_format=torch.channels_last)
            if flips:
                fh = (torch.rand(batch_size, generator=gen) < 0.5).to(data.device)
                fv = (torch.rand(batch_size, generator=gen) < 0.5).to(data.device)
                x0 = torch.where(fh[:, None, None, None], x0.flip(3), x0)
                x0 = torch.where(fv[:, None, None, None], x0.flip(2), x0)
            t = torch.randint(0, diffusion.num_timesteps, (batch_size,), generator=gen).to(data.device)
            noise = torch.randn(x0.shape, generator=gen).to(data.device)  # CPU draws: device-independent
            terms = diffusion.training_losses(net, x0, t, noise)
            loss = terms["loss"].mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            for g in opt.param_groups:  # short linear warm-up
                g["lr"] = lr * min(1.0, (step + 1) / 200)
            opt.step()
            step += 1
            decay = min(ema_decay, (1 + step) / (10 + step))  # warm-up EMA for short runs
            with torch.no_grad():
                for pe, p in zip(ema.net.parameters(), net.parameters()):
                    pe.lerp_(p, 1.0 - decay)
            losses.append(float(loss.detach()))
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            if not np.isfinite(losses[-1]):
                raise FloatingPointError(f"SDAS loss is not finite at step {step}")
            if out_path is not None and time.monotonic() - last_save > save_every_s:
                _finish(ema, step, start, losses, batch_size, data, seed).save(out_path)
                last_save = time.monotonic()
    ema = _finish(ema, step, start, losses, batch_size, data, seed)
    if out_path is not None:
        ema.save(out_path)
    return ema


def _finish(ema: SDASModel, step, start, losses, batch_size, data, seed) -> SDASModel:
    ema.net.to(memory_format=torch.contiguous_format)  # sample exactly as a loaded copy would
    ema.info.update(
        {
            "steps": step,
            "seconds": round(time.monotonic() - start, 1),
            "batch_size": batch_size,
            "num_images": int(len(data)),
            "resolution": int(data.shape[-1]),
            "seed": seed,
            "final_loss": float(np.mean(losses[-50:])) if losses else float("nan"),
        }
    )
    return ema


def train_sdas(
    image_paths,
    out_path,
    size: int = 64,
    minutes: float = 25.0,
    seed: int = 0,
    *,
    max_steps: int | None = None,
    config: UNetConfig | None = None,
    schedule: str = "cosine",
    batch_size: int = 16,
    lr: float = 3e-4,
    flips: bool = False,
    progress: bool = True,
) -> SDASModel:
    """Train SDAS on ``image_paths`` at ``size`` px for at most ``minutes``; save to ``out_path``.

    Returns the EMA model (also written to ``out_path``, atomically, with a format version).
    """
    config = config or UNetConfig(image_size=size)
    if config.image_size != size:
        raise ValueError("config.image_size must equal size")
    data = load_training_images(list(image_paths), size)
    model = SDASModel.create(config, schedule=schedule, seed=seed)
    model.info["data"] = sorted({str(Path(p).parent) for p in image_paths})
    return train_model(
        model,
        data,
        minutes=minutes,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        flips=flips,
        seed=seed,
        out_path=Path(out_path),
        progress=progress,
    )


def main(argv=None) -> None:
    """``python -m defectkit.synth.sdas.train --data DIR --out PATH [--size 64] [--minutes 25]``."""
    import argparse

    from ..io import find_images

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--data", required=True, help="category folder (uses train/good) or a folder of normal images")
    ap.add_argument("--out", required=True, help="checkpoint path (.pt)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=25.0)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--flips", action="store_true", help="flip augmentation (only if flipped images are normal)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(args.data)
    paths = find_images(folder / "train" / "good" if (folder / "train" / "good").is_dir() else folder)
    model = train_sdas(
        paths,
        args.out,
        size=args.size,
        minutes=args.minutes,
        seed=args.seed,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        flips=args.flips,
    )
    print({k: v for k, v in model.info.items() if k != "data"})


if __name__ == "__main__":
    main()
