"""A complete set of SMALL models in exactly the released repositories' layouts, for tests.

`write_tiny_random(DIR)` writes what `--models-dir DIR` expects (DIR/<org>/<name>/...):

  facebook/ActionMesh/denoiser/     config.json + model.safetensors   (PyTorchModelHubMixin layout:
  facebook/ActionMesh/autoencoder/  config.json + model.safetensors    the constructor's keys only)
  VAST-AI/TripoSG/model_index.json, scheduler/scheduler_config.json,
      transformer/, vae/            config.json + diffusion_pytorch_model.safetensors (diffusers)
      image_encoder_dinov2/         config.json + model.safetensors   (transformers Dinov2Model)
      feature_extractor_dinov2/preprocessor_config.json
  facebook/dinov2-large/            config.json + model.safetensors + preprocessor_config.json

Sizes agree across models the way the released ones do: every latent has the shape VAE's
`latent_channels` (the denoisers' `in_channels`, the autoencoder's `latent_channels`), and every
cross-attention takes DINOv2's `hidden_size`. Unlike the release, the set carries its own
generation defaults (64 latent tokens per frame, extraction at 64^3; TINY_NUM_TOKENS and
TINY_GENERATION_DEFAULTS say why), so `generate` with default settings runs in seconds on a CPU.
Weights are seeded random (torch's default initialisation), except the shape VAE: random VAE
weights decode to a field with no surface at all, so the set carries the shipped tiny VAE (backend/weights/tiny/vae, trained, same architecture and parameter names as
TripoSG's), re-saved in TripoSG's `vae/` layout; its field has surfaces, so the set makes meshes.
RMBG-1.4 (optional) is written only when asked (`rmbg=True`, or `write_tiny_rmbg`): a 1/8-width
BriaRMBG in the released `briaai/RMBG-1.4/` layout (config.json + model.safetensors).

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

from .registry import ACTIONMESH, DINOV2, MODEL_SET_DEFAULTS_KEY, MODELS, RMBG, TRIPOSG, ModelSpec

SHIPPED_VAE = Path(__file__).resolve().parents[1] / "weights" / "tiny" / "vae"
DIFFUSERS_VERSION = "0.36.0"  # what the official folders we mirror were written with

# Latent tokens per frame of the tiny set (the denoiser's `num_tokens_nominal`, which generate uses
# as the token count). The VAE is a VecSet model: it takes any token count at call time, and the
# shipped tiny VAE's field still has surfaces with 64 (tests/test_model_store.py). 64 instead of
# its training count (512) keeps Stage I's attention over 16 x 64 tokens cheap: the release's 30
# steps then take seconds on a CPU, not minutes.
TINY_NUM_TOKENS = 64
# The tiny set's own generation defaults, written as our private key of TripoSG's model_index.json
# (backend.hub.registry.MODEL_SET_DEFAULTS_KEY explains why there): extraction at 64^3. The
# stand-in VAE reconstructs coarse blobs (its README), so a finer grid resolves nothing more, and
# its random latents' fields stay near zero over most of the box, so every finer level queries
# almost every cell (512^3: ~4.5 min of queries and a 3.9M-face surface; 64^3: ~5 s).
TINY_GENERATION_DEFAULTS = {"resolution": 64}

# RMBG-1.4 at 1/8 of the released widths (BriaRMBG's own `width_scale`): ~0.7M parameters, the
# released layout and names. Its config.json is the release's (transformers' keys, which our
# loader never acts on) plus that one key of ours.
TINY_RMBG_WIDTH_SCALE = 0.125
RMBG_RELEASED_CONFIG = {
    "architectures": ["BriaRMBG"],
    "auto_map": {"AutoConfig": "MyConfig.RMBGConfig", "AutoModelForImageSegmentation": "briarmbg.BriaRMBG"},
    "in_ch": 3, "model_type": "SegformerForSemanticSegmentation", "out_ch": 1, "torch_dtype": "float32",
    "transformers_version": "4.35.2",
}

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


def tiny_configs(vae_config: dict, dinov2_config: dict = TINY_DINOV2_CONFIG,
                 num_tokens: int = TINY_NUM_TOKENS) -> Dict[str, dict]:
    """The four model configs, sized to agree with the VAE's latents and DINOv2's tokens."""
    latent, context = vae_config["latent_channels"], dinov2_config["hidden_size"]
    return {
        "transformer": dict(num_attention_heads=4, width=64, in_channels=latent, num_layers=5,
                            cross_attention_dim=context, use_cross_attention_2=False, cross_attention_2_dim=None),
        # The keys configs/actionmesh.yaml passes; 5 layers so both halves of the long skips exist.
        "denoiser": dict(num_tokens_nominal=num_tokens, temporal_context_size=16,
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


def write_tiny_random(root, seed: int = 0, vae_dir: Path = SHIPPED_VAE, rmbg: bool = False) -> dict:
    """Writes the set under `root` (see the module docstring); returns what was written.

    rmbg=True also writes a tiny RMBG-1.4 (`write_tiny_rmbg`). Off by default: RMBG is optional in
    the release, and a set without it is what tests of "no background remover" expect."""
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
    _write_json(triposg / "model_index.json", {**MODEL_INDEX, MODEL_SET_DEFAULTS_KEY: TINY_GENERATION_DEFAULTS})
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
        seed=seed, vae_from=str(vae_dir), dinov2=TINY_DINOV2_CONFIG, generation_defaults=TINY_GENERATION_DEFAULTS,
        **configs))
    if rmbg:
        write_tiny_rmbg(root, seed=seed)
    written = (ACTIONMESH, TRIPOSG, DINOV2) + ((RMBG,) if rmbg else ())
    return dict(root=str(root), seed=seed, models=[s.repo_id for s in written],
                configs=configs, dinov2=TINY_DINOV2_CONFIG)


def write_tiny_rmbg(root, seed: int = 0) -> Path:
    """A tiny RMBG-1.4 under `root` (root/briaai/RMBG-1.4/config.json + model.safetensors, the
    released files), for the background-removal path of `generate`. Returns its folder.

    Random weights (torch's default initialisation; BatchNorm at mean 0, variance 1) give a random
    mask, but a usable one: after the release's min-max stretch and Otsu threshold, the example
    clips composited on a plain background keep 5-19 % of each frame as foreground (never none,
    never all; tests/test_background_removal.py checks this). It knows nothing about objects:
    tests check that the remover is used, not what its masks look like.
    """
    from ..models.rmbg import WIDTH_SCALE_KEY, BriaRMBG

    folder = Path(root) / RMBG.org / RMBG.repo_name
    torch.manual_seed(seed)
    model = BriaRMBG(width_scale=TINY_RMBG_WIDTH_SCALE).eval()
    # save_pretrained keeps the tensors' own types (BatchNorm's int64 counters), as the release's file.
    model.save_pretrained(folder)
    _write_json(folder / "config.json", {**RMBG_RELEASED_CONFIG, WIDTH_SCALE_KEY: TINY_RMBG_WIDTH_SCALE})
    return folder


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
