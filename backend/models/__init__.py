"""Our torch models (own code, GPL-3.0-or-later), laid out like diffusers' `models/`.

Parameter names match the official checkpoints so their safetensors load without renaming.
Heavy: importing this package imports torch; the add-on never imports it.
"""

from .configs import TINY_VAE_CONFIG, TRIPOSG_VAE_CONFIG, VAE_CONFIGS, IncompatibleWeights
from .vae import DiagonalGaussianDistribution, ShapeVAE, ShapeVAEOutput

__all__ = [
    "DiagonalGaussianDistribution",
    "IncompatibleWeights",
    "ShapeVAE",
    "ShapeVAEOutput",
    "TINY_VAE_CONFIG",
    "TRIPOSG_VAE_CONFIG",
    "VAE_CONFIGS",
]
