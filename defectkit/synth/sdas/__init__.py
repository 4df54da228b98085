"""SDAS (RealNet): strength-controlled diffusion anomaly synthesis.

An IDDPM with learned variance is trained on a category's normal images; sampling
with the reverse variance inflated by (1 + s) yields images that drift off the
normal manifold by an amount controlled by s (s = 0: normal-looking samples).
"""

from .diffusion import GaussianDiffusion, beta_schedule
from .model import FORMAT_VERSION, SDASModel
from .pool import SamplePool
from .unet import UNet, UNetConfig

_TRAIN = ("load_training_images", "train_model", "train_sdas")


def __getattr__(name):
    # lazy, so ``python -m defectkit.synth.sdas.train`` does not import the module twice
    if name in _TRAIN:
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GaussianDiffusion",
    "beta_schedule",
    "SDASModel",
    "FORMAT_VERSION",
    "SamplePool",
    "train_sdas",
    "train_model",
    "load_training_images",
    "UNet",
    "UNetConfig",
]
