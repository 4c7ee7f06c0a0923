"""A complete set of SMALL models in exactly the released repositories' layouts, for tests.

`write_tiny_random(DIR)` writes what `--models DIR` expects (DIR/<org>/<name>/...):

  facebook/ActionMesh/denoiser/     config.json + model.safetensors   (PyTorchModelHubMixin layout:
  facebook/ActionMesh/autoencoder/  config.json + model.safetensors    the constructor's keys only)
  VAST-AI/TripoSG/model_index.json, scheduler/scheduler_config.json,
      transformer/, vae/            config.json + diffusion_pytorch_model.safetensors (diffusers)
      image_encoder_dinov2/         config.json + model.safetensors   (transformers Dinov2Model)
      feature_extractor_dinov2/preprocessor_config.json
  facebook/dinov2-large/            config.json + model.safetensors + preprocessor_config.json

Sizes agree across models the way the released ones do: every latent has the shape VAE's
`latent_channels` (the denoisers' `in_channels`, the autoencoder's `latent_channels`), every
cross-attention takes DINOv2's `hidden_size`, and the denoiser's nominal token count is the one
the VAE was trained with. Weights are seeded random (torch's default initialisation), except the
shape VAE: random VAE weights decode to a field with no surface at all, so the set carries the
shipped tiny VAE (backend/weights/tiny/vae, trained, same architecture and parameter names as
TripoSG's), re-saved in TripoSG's `vae/` layout; its field has surfaces, so the set makes meshes.
RMBG-1.4 (optional, remote-code architecture) is not part of the set.

`copy_to_hub_cache(DIR, CACHE)` lays such a folder out as huggingface_hub's cache at the pinned
revisions, so the hub-cache code paths (HF_HUB_CACHE, HF_HUB_OFFLINE) can be tested offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Dict, Iterable, List

import torch

from .registry import ACTIONMESH, DINOV2, MODELS, TRIPOSG, ModelSpec

SHIPPED_VAE = Path(__file__).resolve().parents[1] / "weights" / "tiny" / "vae"
DIFFUSERS_VERSION = "0.36.0"  # what the official folders we mirror were written with

TINY_DINOV2_CONFIG = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=4,
                          patch_size=14, image_size=518)

# facebook/dinov2-large preprocessor_config.json (TripoSG's feature_extractor_dinov2 is the same):
# shortest edge 256 (bicubic), centre crop 224, rescale 1/255, ImageNet mean/std.
DINOV2_PREPROCESSOR = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_processor_type": "BitImageProcessor",
    "image_std": [0.229, 0.224, 0.225],
    "resample": 3,
    "rescale_factor": 1 / 255,
    "size": {"shortest_edge": 256},
}

# TripoSG model_index.json / scheduler_config.json: the pipeline's components and the released
# rectified-flow settings.
MODEL_INDEX = {
    "_class_name": "TripoSGPipeline",
    "_diffusers_version": DIFFUSERS_VERSION,
    "feature_extractor_dinov2": ["transformers", "BitImageProcessor"],
    "image_encoder_dinov2": ["transformers", "Dinov2Model"],
    "scheduler": ["triposg.schedulers.scheduling_rectified_flow", "RectifiedFlowScheduler"],
    "transformer": ["triposg.models.transformers.triposg_transformer", "TripoSGDiTModel"],
    "vae": ["triposg.models.autoencoders.autoencoder_kl_triposg", "TripoSGVAEModel"],
}
SCHEDULER_CONFIG = {
    "_class_name": "RectifiedFlowScheduler",
    "_diffusers_version": DIFFUSERS_VERSION,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": False,
}

# Keys of TripoSG's vae/config.json. `num_latents` is our own key (a default token count): the
# official class takes the token count at call time, so its config has no such key.
OFFICIAL_VAE_KEYS = ("in_channels", "latent_channels", "num_attention_heads", "width_encoder", "width_decoder",
                     "num_layers_encoder", "num_layers_decoder", "embedding_type", "embed_frequency",
                     "embed_include_pi")


def tiny_configs(vae_config: dict, dinov2_config: dict = TINY_DINOV2_CONFIG) -> Dict[str, dict]:
    """The four model configs, sized to agree with the VAE's latents and DINOv2's tokens."""
    latent, context = vae_config["latent_channels"], dinov2_config["hidden_size"]
    return {
        "transformer": dict(num_attention_heads=4, width=64, in_channels=latent, num_layers=5,
                            cross_attention_dim=context, use_cross_attention_2=False, cross_attention_2_dim=None),
        # The keys configs/actionmesh.yaml passes; 5 layers so both halves of the long skips exist.
        "denoiser": dict(num_tokens_nominal=vae_config.get("num_latents", 2048), temporal_context_size=16,
                         num_attention_heads=4, width=64, in_channels=latent, num_layers=5,
                         cross_attention_dim=context, mlp_ratio=4.0, inflated_layers=list(range(5)),
                         clear_autocast=False),
        "autoencoder": dict(temporal_context_size=16, in_channels=3, in_extra_channels=3, out_dim=3,
                            latent_channels=latent, width=64, num_layers=2, num_attention_heads=4,
                            embed_frequency=8, embed_include_pi=False, prediction_mode="direct"),
        "vae": {k: vae_config[k] for k in OFFICIAL_VAE_KEYS},
    }


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _save_weights(path: Path, model: torch.nn.Module) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


def _save_dinov2(folder: Path, model, preprocessor: bool) -> None:
    """transformers' own writer (config.json + model.safetensors), as the released folders were made."""
    model.save_pretrained(str(folder), safe_serialization=True)
    if preprocessor:
        _write_json(folder / "preprocessor_config.json", DINOV2_PREPROCESSOR)


def write_tiny_random(root, seed: int = 0, vae_dir: Path = SHIPPED_VAE) -> dict:
    """Writes the set under `root` (see the module docstring); returns what was written."""
    from transformers import Dinov2Config, Dinov2Model

    from ..models.dit import ShapeDiT, TemporalDenoiser
    from ..models.temporal_autoencoder import TemporalAutoencoder
    from ..models.vae import ShapeVAE

    root = Path(root)
    vae = ShapeVAE.from_pretrained(vae_dir)
    configs = tiny_configs(vae.config)
    torch.manual_seed(seed)
    dinov2 = Dinov2Model(Dinov2Config(**TINY_DINOV2_CONFIG)).eval()
    dit = ShapeDiT(**configs["transformer"])
    denoiser = TemporalDenoiser(**configs["denoiser"])
    autoencoder = TemporalAutoencoder(**configs["autoencoder"])

    actionmesh = root / ACTIONMESH.org / ACTIONMESH.repo_name
    for sub, model in (("denoiser", denoiser), ("autoencoder", autoencoder)):
        _write_json(actionmesh / sub / "config.json", configs[sub])
        _save_weights(actionmesh / sub / "model.safetensors", model)

    triposg = root / TRIPOSG.org / TRIPOSG.repo_name
    _write_json(triposg / "model_index.json", MODEL_INDEX)
    _write_json(triposg / "scheduler" / "scheduler_config.json", SCHEDULER_CONFIG)
    for sub, cls_name, model in (("transformer", "TripoSGDiTModel", dit), ("vae", "TripoSGVAEModel", vae)):
        _write_json(triposg / sub / "config.json",
                    {"_class_name": cls_name, "_diffusers_version": DIFFUSERS_VERSION, **configs[sub]})
        _save_weights(triposg / sub / "diffusion_pytorch_model.safetensors", model)
    _save_dinov2(triposg / "image_encoder_dinov2", dinov2, preprocessor=False)  # TripoSG keeps it apart:
    _write_json(triposg / "feature_extractor_dinov2" / "preprocessor_config.json", DINOV2_PREPROCESSOR)

    # The same small DINOv2 serves as facebook/dinov2-large (both are DINOv2-large when released).
    _save_dinov2(root / DINOV2.org / DINOV2.repo_name, dinov2, preprocessor=True)
    _write_json(root / "README.json", dict(
        what="small random models in the released layouts (tests only; they generate nothing meaningful)",
        seed=seed, vae_from=str(vae_dir), dinov2=TINY_DINOV2_CONFIG, **configs))
    return dict(root=str(root), seed=seed, models=[s.repo_id for s in (ACTIONMESH, TRIPOSG, DINOV2)],
                configs=configs, dinov2=TINY_DINOV2_CONFIG)


# ---------------------------------------------------------------- hub-cache layout


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _link_or_copy(blob: Path, link: Path) -> None:
    """A relative symlink snapshot -> blob, as huggingface_hub makes them; a copy where links fail
    (Windows without developer mode: huggingface_hub itself falls back the same way)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    try:
        link.symlink_to(os.path.relpath(blob, link.parent))
    except OSError:
        shutil.copyfile(blob, link)


def copy_to_hub_cache(models_root, cache_root, specs: Iterable[ModelSpec] = MODELS.values()) -> List[str]:
    """Copies each model found under `models_root` (models-folder layout) into `cache_root` in the
    hub-cache layout at its pinned revision (blobs/<sha256>, snapshots/<revision>/..., refs/main).
    Models absent from `models_root` are skipped. Returns the repository folders written."""
    models_root, cache_root = Path(models_root), Path(cache_root)
    written = []
    for spec in specs:
        source = models_root / spec.org / spec.repo_name
        if not source.is_dir():
            continue
        repo = cache_root / f"models--{spec.org}--{spec.repo_name}"
        for rel in spec.files:
            src = source / rel
            if not src.is_file():
                continue
            blob = repo / "blobs" / _sha256(src)
            blob.parent.mkdir(parents=True, exist_ok=True)
            if not blob.is_file():
                shutil.copyfile(src, blob)
            _link_or_copy(blob, repo / "snapshots" / spec.revision / rel)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(spec.revision)
        written.append(str(repo))
    return written
