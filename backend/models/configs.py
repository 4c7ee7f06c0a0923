"""Named model configs and the config/weights (de)serialisation our models share.

A model's constructor keyword arguments ARE its config (as in diffusers' `register_to_config`):
they are written to `config.json` next to the weights, and the weights are safetensors only -
never pickle, which can run code on load. Official diffusers folders (`config.json` +
`diffusion_pytorch_model.safetensors`) load as they are.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import warnings
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from ..errors import BadInput

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# Loading accepts both: ours first, then the diffusers name used by the official TripoSG folders.
WEIGHTS_NAMES = (WEIGHTS_NAME, "diffusion_pytorch_model.safetensors")

# ---------------------------------------------------------------- named configs

# VAST-AI/TripoSG `vae/`: the class defaults of TripoSGVAEModel, which match the released file
# (242.7M parameters). Key names equal the official config.json keys so that file loads as is.
TRIPOSG_VAE_CONFIG = dict(
    in_channels=3,
    latent_channels=64,
    num_attention_heads=8,
    width_encoder=512,
    width_decoder=1024,
    num_layers_encoder=8,
    num_layers_decoder=16,
    embedding_type="frequency",
    embed_frequency=8,
    embed_include_pi=False,
    num_latents=2048,
)

# A CPU-sized VAE with the same architecture and names (about 3.7M parameters, < 16 MB fp32),
# for tests and for training small models on a 2-core machine.
TINY_VAE_CONFIG = dict(
    in_channels=3,
    latent_channels=32,
    num_attention_heads=4,
    width_encoder=128,
    width_decoder=192,
    num_layers_encoder=4,
    num_layers_decoder=5,
    embedding_type="frequency",
    embed_frequency=8,
    embed_include_pi=False,
    num_latents=512,
)

VAE_CONFIGS = {"triposg": TRIPOSG_VAE_CONFIG, "tiny": TINY_VAE_CONFIG}

# VAST-AI/TripoSG `transformer/`: the class defaults of TripoSGDiTModel (the released config.json
# carries the same keys). 1,439,556,160 parameters (5.8 GB fp32).
TRIPOSG_DIT_CONFIG = dict(
    num_attention_heads=16,
    width=2048,
    in_channels=64,
    num_layers=21,
    cross_attention_dim=1024,
    use_cross_attention_2=False,
    cross_attention_2_dim=None,
)

# facebook/ActionMesh `denoiser/` (configs/actionmesh.yaml, `temporal_3D_denoiser`): TripoSG's DiT
# size, every layer's self-attention inflated across the 16 frames of a window. Same parameter count
# as TRIPOSG_DIT_CONFIG (inflation and RoPE add no parameters).
ACTIONMESH_DENOISER_CONFIG = dict(
    num_tokens_nominal=2048,
    temporal_context_size=16,
    num_attention_heads=16,
    width=2048,
    in_channels=64,
    num_layers=21,
    cross_attention_dim=1024,
    mlp_ratio=4.0,
    inflated_layers=list(range(21)),
    clear_autocast=False,
)


# ---------------------------------------------------------------- config capture


def register_to_config(init):
    """Decorates `__init__` so the bound keyword arguments (defaults included) become `self.config`."""

    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        init(self, *args, **kwargs)
        # Set after __init__ because nn.Module.__init__ must run before attributes are assigned.
        self._config = {k: v for k, v in bound.arguments.items() if k != "self"}

    return wrapper


class IncompatibleWeights(BadInput):
    """A weights file whose names/shapes do not match the model its config.json describes."""


def _describe(names, limit: int = 12) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def check_state_dict(model: nn.Module, state_dict: dict, source: str = "weights") -> None:
    """Raises IncompatibleWeights naming every missing, unexpected and wrongly shaped tensor."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = expected.keys() - state_dict.keys()
    unexpected = state_dict.keys() - expected.keys()
    wrong = [f"{k} {tuple(state_dict[k].shape)} != {expected[k]}"
             for k in expected.keys() & state_dict.keys() if tuple(state_dict[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        parts = [f"{source} do not fit {type(model).__name__} built from its config:"]
        if missing:
            parts.append(f"missing {len(missing)}: {_describe(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {_describe(unexpected)}")
        if wrong:
            parts.append(f"wrong shape {len(wrong)}: {_describe(wrong)}")
        raise IncompatibleWeights("; ".join(parts))


class ModelMixin(nn.Module):
    """save_pretrained / from_pretrained for models whose __init__ is @register_to_config."""

    @property
    def config(self) -> dict:
        return dict(self._config)  # a copy: the config describes the built model, edits mean nothing

    def save_pretrained(self, directory: Union[str, Path], weights_name: str = WEIGHTS_NAME,
                        dtype: Optional[torch.dtype] = None) -> Path:
        from safetensors.torch import save_file  # heavy-ish import, only when saving

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"_class_name": type(self).__name__, **self._config}
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        tensors = {k: (v.to(dtype) if dtype is not None else v).detach().cpu().contiguous()
                   for k, v in self.state_dict().items()}
        save_file(tensors, str(directory / weights_name), metadata={"format": "pt"})
        return directory

    @classmethod
    def config_from_file(cls, path: Union[str, Path]) -> dict:
        """Reads config.json, keeping the keys the constructor knows; warns about the rest."""
        raw = json.loads(Path(path).read_text())
        known = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(k for k in raw if k not in known and not k.startswith("_"))
        if unknown:
            warnings.warn(f"{path}: ignoring config keys {cls.__name__} does not take: {', '.join(unknown)}")
        return {k: v for k, v in raw.items() if k in known}

    @classmethod
    def from_pretrained(cls, directory: Union[str, Path], subfolder: Optional[str] = None,
                        device: Union[str, torch.device, None] = None, dtype: Optional[torch.dtype] = torch.float32):
        from safetensors.torch import load_file

        directory = Path(directory) / subfolder if subfolder else Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise BadInput(f"no {CONFIG_NAME} in {directory}")
        weights = next((directory / n for n in WEIGHTS_NAMES if (directory / n).is_file()), None)
        if weights is None:
            pickles = sorted(p.name for p in directory.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
            hint = f" (found {', '.join(pickles)}: pickle files are refused, they can run code)" if pickles else ""
            raise BadInput(f"no weights in {directory}: expected one of {', '.join(WEIGHTS_NAMES)}{hint}")

        # Build on the meta device (no memory), then adopt the loaded tensors with assign=True,
        # so a 1 GB checkpoint never exists twice in RAM.
        with torch.device("meta"):
            model = cls(**cls.config_from_file(config_path))
        state_dict = load_file(str(weights), device="cpu")
        check_state_dict(model, state_dict, source=str(weights))
        if dtype is not None:
            state_dict = {k: v.to(dtype) for k, v in state_dict.items()}
        model.load_state_dict(state_dict, strict=True, assign=True)
        if device is not None:
            model.to(device)
        return model.eval()


def file_sha256(path: Union[str, Path]) -> str:
    """Fingerprint of a weights file, recorded in model cards to tie trained models together."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
