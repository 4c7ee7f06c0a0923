"""Small random versions of the prompt path's video models, in the released repositories' layouts
(`models tiny-random --with-video`), so `generate --prompt` runs end to end on a CPU in tests.

diffusers builds each pipeline from configs (as its own tests do): the same classes as the
release (WanPipeline, with `expand_timesteps` for Wan2.2-TI2V-5B as its model_index.json says;
that model's VAE packs 2 x 2 pixels per channel and compresses 16x), widths cut to a few
channels, two layers each. The text encoder is a two-layer UMT5 and the tokenizer a word-level
one over a small vocabulary (the release's is UMT5's 256k SentencePiece vocabulary): it counts
tokens the same way for the prompt-length check, it knows few words (the rest are <unk>).
Weights are written where the release keeps them, sharded as the release is (the registry's file
list), so the model store sees the set as whole.

Each model_index.json carries our private generation defaults (TINY_VIDEO_DEFAULTS, under the
registry's MODEL_SET_DEFAULTS_KEY): 64 x 64 pixels and 4 steps instead of the release's 480p
and 50 steps, so a clip takes a second.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List

import torch

from .registry import MODEL_SET_DEFAULTS_KEY, VIDEO, VIDEO_MODELS, ModelSpec

TINY_VIDEO_DEFAULTS = {"height": 64, "width": 64, "steps": 4}
TINY_TEXT = dict(d_model=32, d_kv=8, num_heads=4, num_layers=2, d_ff=64, relative_attention_num_buckets=8)
TINY_TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, text_dim=32,
                        freq_dim=16, ffn_dim=32, num_layers=2, rope_max_seq_len=32)
# Wan2.1's VAE: 16 latent channels (its config's latents_mean/std), 8x spatial, 4x temporal.
TINY_VAE_21 = dict(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                   temperal_downsample=[False, True, True])
# Wan2.2's: 2 x 2 pixel patches (12 input channels), 16x spatial, residual blocks; 8 latent
# channels here (the release's 48), with unit statistics.
TINY_VAE_22 = dict(base_dim=8, decoder_base_dim=8, z_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                   temperal_downsample=[False, True, True], is_residual=True, patch_size=2, in_channels=12,
                   out_channels=12, scale_factor_spatial=16, latents_mean=[0.0] * 8, latents_std=[1.0] * 8)
VOCABULARY = ("a an and the of to in on with its his her their is are at from into up down over side front back "
              "view red blue green white black small big dragon bird cat dog horse panda bear robot person man "
              "woman child character creature flapping wings walks walking forward backward runs running jumps "
              "jumping turns turning head waves waving right left arm arms leg legs tail dances dancing sits "
              "stands single subject whole body centered plain background static still camera no motion evenly "
              "lit clear shape continues same").split()


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "</s>", "<unk>"] + sorted(set(VOCABULARY))
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=512), len(words)


def _pipeline(spec: ModelSpec):
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer, vocab = _tokenizer()
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=vocab, **TINY_TEXT)).eval()
    video = VIDEO[spec.name]
    image_to_video = video.image_to_video
    vae_config = TINY_VAE_22 if image_to_video else TINY_VAE_21
    channels = vae_config["z_dim"]
    transformer = WanTransformer3DModel(in_channels=channels, out_channels=channels, **TINY_TRANSFORMER)
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        flow_shift=video.flow_shift, num_train_timesteps=1000)
    parts = dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=AutoencoderKLWan(**vae_config),
                 transformer=transformer, scheduler=scheduler)
    if image_to_video:  # the release's model_index.json names WanPipeline with expand_timesteps
        return WanPipeline(**parts, expand_timesteps=True)
    return WanPipeline(**parts)


def _reshard(folder: Path, shards: List[str]) -> None:
    """One safetensors file in `folder` -> the release's shards and their index (both diffusers
    and transformers load a sharded folder through its *.index.json)."""
    from safetensors.torch import load_file, save_file

    single = next(p for p in folder.glob("*.safetensors"))
    tensors = load_file(str(single))
    single.unlink()
    names = sorted(tensors)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        part = {k: tensors[k].contiguous() for k in names[i::len(shards)]}
        save_file(part, str(folder / shard), metadata={"format": "pt"})
        weight_map.update({k: shard for k in part})
        total += sum(t.numel() * t.element_size() for t in part.values())
    index = re.sub(r"-\d+-of-\d+\.safetensors$", ".safetensors.index.json", shards[0])
    (folder / index).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def _layout_as_released(folder: Path, spec: ModelSpec) -> None:
    by_folder: Dict[str, List[str]] = {}
    for rel in spec.weights_files:
        sub, name = rel.rsplit("/", 1)
        by_folder.setdefault(sub, []).append(name)
    for sub, names in by_folder.items():
        if len(names) > 1:
            _reshard(folder / sub, sorted(names))
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index[MODEL_SET_DEFAULTS_KEY] = TINY_VIDEO_DEFAULTS
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    wanted = set(spec.files)
    for path in sorted(folder.rglob("*")):  # what the release has and we never take: not written
        if path.is_file() and path.relative_to(folder).as_posix() not in wanted:
            path.unlink()
    missing = [rel for rel in spec.files if not (folder / rel).is_file()]
    if missing:
        raise RuntimeError(f"the tiny {spec.name} lacks {', '.join(missing)}: its layout no longer matches the registry")


def write_tiny_video(root, seed: int = 0) -> List[str]:
    """Every video model of the registry, small and random, under root/<org>/<name>/. Returns
    the repository ids written."""
    written = []
    for spec in VIDEO_MODELS:
        torch.manual_seed(seed)
        folder = Path(root) / spec.org / spec.repo_name
        _pipeline(spec).save_pretrained(str(folder), safe_serialization=True)
        _layout_as_released(folder, spec)
        written.append(spec.repo_id)
    return written
