"""The released models' architectures, built from their official configs without weights.

`build_on_meta` makes a full-size module on torch's "meta" device: every parameter has its
shape and dtype but no storage, so the 1.4B-parameter transformers cost nothing to build. This
serves `python -m backend weights manifest` (our parameter names and shapes, to compare with the
official checkpoints) and `python -m backend plan` (parameters, FLOPs and memory per stage).

DINOv2-large is transformers' `Dinov2Model`, built from the released facebook/dinov2-large
config.json (hidden 1024, 24 layers, 16 heads, patch 14, image size 518).
"""

from __future__ import annotations

import json
from typing import Callable, Dict, Tuple

import torch
from torch import nn

from ..errors import BadInput, Unsupported
from ..models.configs import ACTIONMESH_DENOISER_CONFIG, TRIPOSG_DIT_CONFIG, TRIPOSG_VAE_CONFIG
from ..models.temporal_configs import ACTIONMESH_AUTOENCODER_CONFIG


def _vae():
    from ..models.vae import ShapeVAE

    return ShapeVAE, TRIPOSG_VAE_CONFIG


def _dit():
    from ..models.dit import ShapeDiT

    return ShapeDiT, TRIPOSG_DIT_CONFIG


def _denoiser():
    from ..models.dit import TemporalDenoiser

    return TemporalDenoiser, ACTIONMESH_DENOISER_CONFIG


def _autoencoder():
    from ..models.temporal_autoencoder import TemporalAutoencoder

    return TemporalAutoencoder, ACTIONMESH_AUTOENCODER_CONFIG


# name -> (where the official weights live, lazy (class, config)). Names = the manifest keys.
OFFICIAL_MODELS: Dict[str, Tuple[str, Callable]] = {
    "triposg_vae": ("VAST-AI/TripoSG vae/", _vae),
    "triposg_dit": ("VAST-AI/TripoSG transformer/", _dit),
    "actionmesh_denoiser": ("facebook/ActionMesh denoiser/", _denoiser),
    "actionmesh_autoencoder": ("facebook/ActionMesh autoencoder/", _autoencoder),
}

# facebook/dinov2-large config.json (the keys that set the architecture).
DINOV2_LARGE_CONFIG = dict(
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    mlp_ratio=4,
    patch_size=14,
    image_size=518,
    num_channels=3,
    qkv_bias=True,
    layerscale_value=1.0,
    layer_norm_eps=1e-6,
    hidden_act="gelu",
    use_swiglu_ffn=False,
)


def build_on_meta(name: str, dtype: torch.dtype = torch.float32) -> nn.Module:
    """One of OFFICIAL_MODELS at full size on the meta device (no memory), in eval mode."""
    if name not in OFFICIAL_MODELS:
        raise BadInput(f"unknown model {name!r}: expected one of {', '.join(OFFICIAL_MODELS)}")
    cls, config = OFFICIAL_MODELS[name][1]()
    with torch.device("meta"):
        model = cls(**config)
    return model.to(dtype).eval()


def build_dinov2_on_meta(config: dict = DINOV2_LARGE_CONFIG, dtype: torch.dtype = torch.float32) -> nn.Module:
    """transformers' Dinov2Model with `config` on the meta device (needs transformers)."""
    try:
        from transformers import Dinov2Config, Dinov2Model
    except ImportError:
        raise Unsupported("transformers is not installed (pip install -r backend/requirements.txt)") from None
    with torch.device("meta"):
        # "sdpa": the attention a GPU run uses (one fused kernel, no attention matrix in memory).
        model = Dinov2Model(Dinov2Config(**config, attn_implementation="sdpa"))
    return model.to(dtype).eval()


def parameter_manifest(name: str) -> Dict[str, list]:
    """{name: shape} of the state_dict our module has with the official config, in state_dict order
    (the format of the parameter manifests `python -m backend weights NAME` prints)."""
    model = build_on_meta(name)
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def manifest_json(name: str) -> str:
    return json.dumps(parameter_manifest(name), indent=1)


# The video models' architectures (generate --prompt), the keys of the released configs that set
# shapes, at the registry's pinned revisions (Wan2.1-T2V-1.3B 0fad780a, Wan2.2-TI2V-5B b8fff731).
# Both share the text encoder: UMT5-XXL's encoder.
UMT5_XXL_ENCODER_CONFIG = dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, vocab_size=256384,
                               feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                               relative_attention_max_distance=128)
VIDEO_ARCHITECTURES = {
    "wan2.1-t2v-1.3b": dict(
        transformer=dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                         out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30,
                         cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024),
        vae=dict(base_dim=96, z_dim=16)),
    "wan2.2-ti2v-5b": dict(
        transformer=dict(patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, in_channels=48,
                         out_channels=48, text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30,
                         cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024),
        vae=dict(base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                 temperal_downsample=[False, True, True], is_residual=True, patch_size=2, in_channels=12,
                 out_channels=12, scale_factor_spatial=16, latents_mean=[0.0] * 48, latents_std=[1.0] * 48)),
}


def build_video_on_meta(name: str) -> Dict[str, nn.Module]:
    """A video model's text encoder, transformer and VAE at full size on the meta device, in the
    precisions the prompt path loads them in on a GPU (bf16; the VAE float32)."""
    if name not in VIDEO_ARCHITECTURES:
        raise BadInput(f"unknown video model {name!r}: expected one of {', '.join(VIDEO_ARCHITECTURES)}")
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    arch = VIDEO_ARCHITECTURES[name]
    with torch.device("meta"):
        text = UMT5EncoderModel(UMT5Config(**UMT5_XXL_ENCODER_CONFIG))
        transformer = WanTransformer3DModel(**arch["transformer"])
        vae = AutoencoderKLWan(**arch["vae"])
    return {"text_encoder": text.to(torch.bfloat16).eval(), "transformer": transformer.to(torch.bfloat16).eval(),
            "vae": vae.eval()}
