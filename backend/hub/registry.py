"""The released models the ActionMesh pipeline reads, pinned to one revision each.

Each entry names a Hugging Face model repository, the commit we pin it to, the files we take from
it (safetensors weights and JSON configs only: never pickles, never remote code), its licence and
its approximate download size. The add-on shows these before anything is downloaded.

Revisions: a full 40-hex commit, so a download always gets the files our code was checked
against even after the repository's `main` moves. They were not read off the hub here (this
machine cannot reach it); each one was found in public code that pins and downloads these
repositories, and two of them agree with the short commit the hub's own file pages show
(TripoSG `2c1c516` "Initial release" on `image_encoder_dinov2/`, dinov2-large `47b73ee`
"Update license" on `main`). If a pin turns out to be wrong, `models download` fails with
"revision not found" and nothing else changes: correct it here.

The video models' pins (Wan2.1-T2V-1.3B at 0fad780a, Wan2.2-TI2V-5B at b8fff731) and their file
lists and sizes come the same way: public download manifests that list every file of those
commits with its size and SHA-256, and the hub's tree pages. We take the tokenizer's
tokenizer.json, not its SentencePiece model (the fast tokenizer reads the first alone).

Sizes: bytes of the files we take, rounded. ActionMesh and the TripoSG VAE are our parameter
counts (the official manifests) x 4 bytes (float32); the other weights files are the sizes the
hub's file pages list. A public listing of full snapshots at these revisions agrees (ActionMesh
6,615,176,099 bytes; TripoSG 7,946,494,238 bytes, both including small README/.gitattributes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

from ..errors import BadInput

# Ours: a model set may carry its own generation defaults, as a private ("_"-prefixed, which every
# loader skips as metadata, like diffusers' "_class_name") key of TripoSG's model_index.json, the
# Stage 0 pipeline's config. The release's folders carry none, so they run with the release's
# settings. `models tiny-random` writes one: its stand-in VAE reconstructs coarse blobs and
# its random latents' fields hover near zero everywhere, so a 512^3 grid costs minutes of queries
# and resolves nothing a 64^3 grid does not. Only these keys are read from it:
MODEL_SET_DEFAULTS_KEY = "_actionmesh_blender_defaults"
MODEL_SET_DEFAULT_NAMES = ("resolution",)

GB = 1_000_000_000


@dataclass(frozen=True)
class Licence:
    name: str
    url: str
    commercial_use: bool  # False: the user must accept it explicitly (--accept-licence) before a download

    def describe(self) -> str:
        return self.name if self.commercial_use else f"{self.name} (non-commercial)"


@dataclass(frozen=True)
class ModelSpec:
    name: str  # short name used on the command line
    repo_id: str  # Hugging Face model repository
    revision: str  # a full commit sha (see the module docstring)
    files: Tuple[str, ...]  # paths inside the repository, "/"-separated
    licence: Licence
    size_bytes: int  # approximate total of `files`
    purpose: str
    required: bool = True  # False: only some inputs need it (see `purpose`)

    @property
    def org(self) -> str:
        return self.repo_id.split("/")[0]

    @property
    def repo_name(self) -> str:
        return self.repo_id.split("/")[1]

    @property
    def weights_files(self) -> Tuple[str, ...]:
        return tuple(f for f in self.files if f.endswith(".safetensors"))

    def size_text(self) -> str:
        return format_size(self.size_bytes)

    def fetch_command(self, models_dir=None) -> str:
        """The shell command that downloads this model (to `models_dir`, or to the hub cache)."""
        parts = ["python -m backend models download", self.name]
        if not self.licence.commercial_use:
            parts.append("--accept-licence")
        if models_dir is not None:
            parts.append(f"--models-dir {models_dir}")
        return " ".join(parts)


def format_size(n: int) -> str:
    for unit, scale in (("GB", GB), ("MB", 1_000_000), ("kB", 1_000)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}" if n < 100 * scale else f"{n / scale:.0f} {unit}"
    return f"{n} B"


ACTIONMESH = ModelSpec(
    name="actionmesh",
    repo_id="facebook/ActionMesh",
    revision="fb69228ba8a4df684907b5d259cff3c22fb722f1",
    files=(
        "denoiser/config.json",
        "denoiser/model.safetensors",
        "autoencoder/config.json",
        "autoencoder/model.safetensors",
    ),
    licence=Licence("FAIR Noncommercial Research License", "https://huggingface.co/facebook/ActionMesh",
                    commercial_use=False),
    # denoiser 1,439,556,160 + autoencoder 214,213,635 parameters, float32.
    size_bytes=6_615_000_000,
    purpose="Stage I temporal denoiser and Stage II temporal autoencoder",
)

TRIPOSG = ModelSpec(
    name="triposg",
    repo_id="VAST-AI/TripoSG",
    revision="2c1c516d22d58db486a058d98d31bb6177344e06",
    files=(
        "model_index.json",
        "transformer/config.json",
        "transformer/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
        "image_encoder_dinov2/config.json",
        "image_encoder_dinov2/model.safetensors",
        "feature_extractor_dinov2/preprocessor_config.json",
    ),
    licence=Licence("MIT", "https://huggingface.co/VAST-AI/TripoSG", commercial_use=True),
    # transformer 5.76 GB + vae 242.7M parameters x 4 (0.97 GB) + image encoder 1.22 GB.
    size_bytes=7_950_000_000,
    purpose="Stage 0: the anchor frame's shape (flow transformer, shape VAE, DINOv2 image encoder)",
)

DINOV2 = ModelSpec(
    name="dinov2",
    repo_id="facebook/dinov2-large",
    revision="47b73eefe95e8d44ec3623f8890bd894b6ea2d6c",
    files=("config.json", "model.safetensors", "preprocessor_config.json"),
    licence=Licence("Apache-2.0", "https://huggingface.co/facebook/dinov2-large", commercial_use=True),
    size_bytes=1_220_000_000,
    purpose="per-frame image features for Stage I",
)

RMBG = ModelSpec(
    name="rmbg",
    repo_id="briaai/RMBG-1.4",
    revision="2ceba5a5efaec153162aedea169f76caf9b46cf8",
    files=("config.json", "model.safetensors"),
    licence=Licence("Bria RMBG-1.4 License", "https://huggingface.co/briaai/RMBG-1.4",
                    commercial_use=False),
    size_bytes=176_000_000,
    purpose="background removal, only for frames without a usable alpha channel",
    required=False,
)

# -- the prompt path's video models (`generate --prompt`): diffusers' own pipelines, no remote code.


@dataclass(frozen=True)
class VideoModel:
    """How the prompt path runs a video model: its diffusers pipeline and the generation settings
    of its model card. A model set may override height, width and steps with the private defaults
    key of its model_index.json (the tiny set does)."""

    image_to_video: bool  # True: also continues a given first frame (Wan2.2 TI2V); the text path works either way
    height: int
    width: int
    steps: int
    guidance: float
    flow_shift: float  # the UniPC scheduler's shift the model card uses at this size
    fps: float  # the rate its clips are made for
    max_tokens: int  # the text encoder's sequence length: a longer prompt is refused, not cut
    frame_step: int  # the VAE's temporal compression: clips are 1 + k * frame_step frames long
    gpu_gib: float  # the least GPU memory the model card runs it in (with offload)
    resident_gib: float  # the peak with every part on the GPU (`plan --prompt`, 17 frames): less memory -> offload


def _wan_files(text_encoder_shards: int, transformer_shards: int) -> Tuple[str, ...]:
    """A Wan diffusers repository's files we take: configs, the tokenizer's tokenizer.json, the
    sharded text encoder and transformer with their indexes, the VAE."""
    def shards(prefix: str, count: int) -> Tuple[str, ...]:
        return tuple(f"{prefix}-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1))

    return ("model_index.json", "scheduler/scheduler_config.json",
            "text_encoder/config.json", *shards("text_encoder/model", text_encoder_shards),
            "text_encoder/model.safetensors.index.json",
            "tokenizer/special_tokens_map.json", "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json",
            "transformer/config.json", *shards("transformer/diffusion_pytorch_model", transformer_shards),
            "transformer/diffusion_pytorch_model.safetensors.index.json",
            "vae/config.json", "vae/diffusion_pytorch_model.safetensors")


WAN_T2V = ModelSpec(
    name="wan2.1-t2v-1.3b",
    repo_id="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    revision="0fad780a534b6463e45facd96134c9f345acfa5b",
    files=_wan_files(text_encoder_shards=5, transformer_shards=2),
    licence=Licence("Apache-2.0", "https://huggingface.co/Wan-AI/Wan2.1-T2V-1.3B-Diffusers", commercial_use=True),
    # all float32: text encoder (UMT5-XXL's encoder) 22.72 GB, transformer 5.68 GB, VAE 0.51 GB.
    size_bytes=28_920_000_000,
    purpose="text to video for `generate --prompt` (a new object from a prompt); fits a 12 GB GPU",
    required=False,
)

WAN_TI2V = ModelSpec(
    name="wan2.2-ti2v-5b",
    repo_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
    revision="b8fff7315c768468a5333511427288870b2e9635",
    files=_wan_files(text_encoder_shards=3, transformer_shards=5),
    licence=Licence("Apache-2.0", "https://huggingface.co/Wan-AI/Wan2.2-TI2V-5B-Diffusers", commercial_use=True),
    # text encoder bfloat16 11.36 GB, transformer float32 20.0 GB, VAE float32 2.82 GB.
    size_bytes=34_180_000_000,
    purpose="image (and text) to video for `generate --prompt --mesh` (your mesh, animated by a prompt); "
            "24 GB GPU with offload",
    required=False,
)

VIDEO = {
    WAN_T2V.name: VideoModel(image_to_video=False, height=480, width=832, steps=50, guidance=5.0, flow_shift=3.0,
                             fps=16.0, max_tokens=512, frame_step=4, gpu_gib=11.0,
                             resident_gib=22.0),
    WAN_TI2V.name: VideoModel(image_to_video=True, height=704, width=1280, steps=50, guidance=5.0, flow_shift=5.0,
                              fps=24.0, max_tokens=512, frame_step=4, gpu_gib=24.0,
                              resident_gib=41.7),
}
VIDEO_MODELS = (WAN_T2V, WAN_TI2V)
# The prompt path's defaults: text alone -> the small text-to-video model; a first frame (a
# render of the user's mesh) -> the one model of the family that continues an image and fits 24 GB.
TEXT_TO_VIDEO, IMAGE_TO_VIDEO = WAN_T2V.name, WAN_TI2V.name

MODELS: Dict[str, ModelSpec] = {m.name: m for m in (ACTIONMESH, TRIPOSG, DINOV2, RMBG, WAN_T2V, WAN_TI2V)}


def get_model(name: str) -> ModelSpec:
    """A model by short name ("actionmesh") or repository id ("facebook/ActionMesh"), any case."""
    key = name.strip().lower()
    for spec in MODELS.values():
        if key in (spec.name, spec.repo_id.lower()):
            return spec
    raise BadInput(f"unknown model {name!r}: expected one of {', '.join(MODELS)}")


def resolve_names(names) -> Tuple[ModelSpec, ...]:
    """Command-line names -> specs; "all" is every model, none given is every required one."""
    names = list(names or [])
    if not names:
        return tuple(m for m in MODELS.values() if m.required)
    if any(n.lower() == "all" for n in names):
        return tuple(MODELS.values())
    return tuple(dict.fromkeys(get_model(n) for n in names))
