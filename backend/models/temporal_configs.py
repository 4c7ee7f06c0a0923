"""Named configs of the temporal (Stage II) autoencoder: the official size and a CPU-sized one.

Keys are the constructor arguments of `TemporalAutoencoder`, spelled like the keys of the official
`facebook/ActionMesh` `autoencoder/config.json` so that file loads as it is.
"""

from __future__ import annotations

# facebook/ActionMesh `autoencoder/` (configs/actionmesh.yaml, `temporal_3D_vae`): 16 self-attention
# blocks of width 1024 + one cross-attention block: 214,213,635 parameters (0.86 GB fp32).
# (If the official config.json carries keys we do not take, e.g. `verbose`, loading warns and ignores them.)
ACTIONMESH_AUTOENCODER_CONFIG = dict(
    temporal_context_size=16,
    in_channels=3,
    in_extra_channels=3,
    out_dim=3,
    latent_channels=64,
    width=1024,
    num_layers=16,
    num_attention_heads=8,
    embed_frequency=8,
    embed_include_pi=False,
    prediction_mode="direct",
)

# Same architecture and names, sized for CPU training next to the `tiny` shape VAE (whose latents
# have 32 channels). 3,128,259 parameters, 12.5 MB in float32.
TINY_AUTOENCODER_CONFIG = dict(
    temporal_context_size=16,
    in_channels=3,
    in_extra_channels=3,
    out_dim=3,
    latent_channels=32,
    width=192,
    num_layers=6,
    num_attention_heads=4,
    embed_frequency=8,
    embed_include_pi=False,
    prediction_mode="direct",
)

AUTOENCODER_CONFIGS = {"actionmesh": ACTIONMESH_AUTOENCODER_CONFIG, "tiny": TINY_AUTOENCODER_CONFIG}
