"""generate --prompt and prompt-video: a prompt -> a clip made by a video model (the tiny random
Wan pipelines of `models tiny-random --with-video`, diffusers' own classes) -> the video pipeline's
outputs plus prompt_video.mp4; bad input refused before anything is written; `plan --prompt`."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend_cli import REPO, run_backend

PROMPT = "a red dragon flapping its wings, side view"


@pytest.fixture(scope="module")
def video_models(tiny_video_models, disc_masks):
    return tiny_video_models, disc_masks


def _cube_with_view(folder: Path):
    """A subdivided box (the user's mesh) and a 64 x 64 picture of it (the add-on's render stands here)."""
    import trimesh
    from PIL import Image

    mesh = trimesh.creation.box(extents=(1.0, 1.6, 0.6)).subdivide().subdivide()
    mesh.export(folder / "box.obj")
    view = np.full((64, 64, 3), 255, np.uint8)
    view[14:54, 22:42] = (180, 60, 40)
    Image.fromarray(view).save(folder / "view.png")
    return folder / "box.obj", folder / "view.png", len(mesh.vertices)


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_tiny_random_with_video_is_ready_in_the_released_layout(video_models):
    models, _ = video_models
    proc = run_backend("models", "list", "--models-dir", models, "--json")
    assert proc.returncode == 0, proc.stderr
    states = {m["name"]: m["state"] for m in json.loads(proc.stdout)["models"]}
    assert states["wan2.1-t2v-1.3b"] == states["wan2.2-ti2v-5b"] == "ready", states
    # the release's shards and index, as the registry lists them
    index = models / "Wan-AI" / "Wan2.2-TI2V-5B-Diffusers" / "transformer" / \
        "diffusion_pytorch_model.safetensors.index.json"
    shards = set(json.loads(index.read_text())["weight_map"].values())
    assert shards == {f"diffusion_pytorch_model-{i:05d}-of-00005.safetensors" for i in range(1, 6)}
    model_index = json.loads((index.parents[1] / "model_index.json").read_text())
    assert model_index["_class_name"] == "WanPipeline" and model_index["expand_timesteps"] is True


def test_generate_from_a_prompt_makes_the_clip_and_the_animated_mesh(video_models, tmp_path):
    from backend.io import read_frames

    models, masks = video_models
    out = tmp_path / "dragon"
    proc = run_backend("generate", "--prompt", PROMPT, "--out", out, "--models-dir", models, "--masks", masks,
                       "--seed", 7, "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert sorted(p.name for p in out.iterdir()) == ["anchor.glb", "animated.glb", "animation.npz",
                                                     "prompt_video.mp4", "report.json"]
    assert result["prompt_video"] == str(out / "prompt_video.mp4") and result["frames"] == 16
    clip = read_frames(out / "prompt_video.mp4")
    assert clip.frames.shape == (16, 64, 64, 3) and clip.fps == 16.0
    with np.load(out / "animation.npz") as animation:
        assert animation["offsets"].shape[0] == 16 and np.isfinite(animation["offsets"]).all()
    report = _report(out)
    made = report["prompt"]
    assert made["prompt"] == PROMPT and PROMPT in made["sent_prompt"] and "plain white background" in made["sent_prompt"]
    assert made["model"] == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" and made["seed"] == 7 and made["image"] is None
    assert made["pinned_revision"] == "0fad780a534b6463e45facd96134c9f345acfa5b"
    assert report["input"]["source"] == "prompt_video.mp4"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the clip's hidden folder is gone
    # The same seed makes the same clip; another seed another one.
    again = tmp_path / "again.mp4"
    other = tmp_path / "other.mp4"
    for path, seed in ((again, 7), (other, 8)):
        proc = run_backend("prompt-video", "--prompt", PROMPT, "--out", path, "--models-dir", models, "--seed", seed,
                           "--json")
        assert proc.returncode == 0, proc.stderr
    first, second = read_frames(again).frames.astype(int), read_frames(other).frames.astype(int)
    assert np.abs(first - clip.frames.astype(int)).mean() < 2.0  # the codec's rounding only
    assert np.abs(first - second).mean() > 10.0


def test_mesh_and_prompt_animate_the_users_mesh_from_its_view(video_models, tmp_path):
    models, masks = video_models
    mesh, view, vertices = _cube_with_view(tmp_path)
    out = tmp_path / "waving"
    proc = run_backend("generate", "--prompt", "waves its right arm", "--mesh", mesh, "--view", view, "--method", "fit",
                       "--out", out, "--models-dir", models, "--masks", masks, "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["method"] == "fit" and result["vertices"] == vertices and result["frames"] == 16
    made = _report(out)["prompt"]
    assert made["model"] == "Wan-AI/Wan2.2-TI2V-5B-Diffusers" and made["image"] == str(view)
    assert made["made_frames"] == 17 and made["frames"] == 16
    assert (out / "prompt_video.mp4").is_file() and (out / "camera.json").is_file()


def _refused(args, tmp_path, expected: str, code: str = "bad_input"):
    out = tmp_path / "out"
    proc = run_backend("generate", *args, "--out", out, "--json", timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"error ({code})" in proc.stderr and expected in proc.stderr, proc.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_prompt_input_is_refused_before_anything_is_written(video_models, tmp_path):
    models, masks = video_models
    mesh, view, _ = _cube_with_view(tmp_path)
    flat = tmp_path / "flat.obj"
    flat.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")  # vertices, no faces
    common = ("--models-dir", models, "--masks", masks)
    _refused(("--prompt", "   ", *common), tmp_path, "the prompt is empty")
    _refused(("--prompt", " ".join(["dragon"] * 600), *common), tmp_path, "reads at most 512: shorten it")
    _refused(("--prompt", PROMPT, "--input", view, *common), tmp_path, "not both")
    _refused(("--prompt", PROMPT, "--mesh", mesh, "--method", "fit", *common), tmp_path, "needs --view")
    _refused(("--prompt", PROMPT, "--mesh", flat, "--view", view, "--method", "fit", *common), tmp_path,
             "flat.obj is empty (")
    _refused(("--prompt", PROMPT, "--frames", "50", *common), tmp_path, "at most 49")
    _refused(("--prompt", PROMPT, "--view", tmp_path / "missing.png", *common), tmp_path, "first frame not found")
    # The video model not stored: the message names what to fetch.
    empty = tmp_path / "no_models"
    empty.mkdir()
    _refused(("--prompt", PROMPT, "--mesh", mesh, "--view", view, "--method", "fit", "--models-dir", empty), tmp_path,
             "models download wan2.2-ti2v-5b", code="missing_model")


def test_released_video_models_are_refused_on_the_cpu_with_the_estimate(tmp_path):
    from backend.hub.architectures import VIDEO_ARCHITECTURES
    from backend.pipelines.prompt_video import cpu_refusal

    (tmp_path / "transformer").mkdir()
    config = tmp_path / "transformer" / "config.json"
    config.write_text(json.dumps(VIDEO_ARCHITECTURES["wan2.1-t2v-1.3b"]["transformer"]))
    message = cpu_refusal("wan2.1-t2v-1.3b", tmp_path, 17, 480, 832, 50)
    # 3.2 PFLOP of denoising (plan --prompt) plus the attention's share as this rough count has it
    assert "about 3.3 PFLOP" in message and "hours on a desktop CPU" in message and "at least 11 GB" in message
    config.write_text(json.dumps({"num_attention_heads": 2, "attention_head_dim": 8, "num_layers": 2}))
    assert cpu_refusal("wan2.1-t2v-1.3b", tmp_path, 17, 64, 64, 4) is None  # a tiny stand-in runs


def test_prompt_video_through_the_service_reports_progress(video_models, tmp_path):
    models, _ = video_models
    proc = subprocess.Popen([sys.executable, "-m", "backend", "serve"], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert "prompt_video" in json.loads(proc.stdout.readline())["commands"]
        args = {"prompt": PROMPT, "out": str(tmp_path / "clip.mp4"), "models_dir": str(models), "frames": 20}
        proc.stdin.write(json.dumps({"type": "submit", "job": "j1", "command": "prompt_video", "args": args}) + "\n")
        proc.stdin.flush()
        messages = []
        while not messages or messages[-1]["type"] not in ("result", "error"):
            messages.append(json.loads(proc.stdout.readline()))
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert messages[-1]["type"] == "result", messages[-1]
    outputs = messages[-1]["outputs"]
    assert outputs["frames"] == 20 and outputs["made_frames"] == 21 and Path(outputs["video"]).is_file()
    steps = [m for m in messages if m["type"] == "progress" and m["stage"] == "video"]
    assert steps[-1]["step"] == steps[-1]["total"] == 4 and len(steps) >= 5


def test_plan_gives_the_prompt_paths_memory_per_stage_with_and_without_offload():
    from backend.hub.registry import VIDEO

    for extra, name in (((), "wan2.1-t2v-1.3b"), (("--image",), "wan2.2-ti2v-5b")):
        proc = run_backend("plan", "--prompt", *extra, "--json", timeout=300)
        assert proc.returncode == 0, proc.stderr
        plan = json.loads(proc.stdout)["prompt"]
        assert plan["name"] == name
        stages = {s["name"]: s for s in plan["stages"]}
        assert set(stages) == {"text_encoder", "denoiser", "vae_decode"} | ({"vae_encode"} if extra else set())
        for s in stages.values():
            assert s["peak_bytes"]["offload"] < s["peak_bytes"]["resident"]
        gib = plan["peak_bytes"]["resident"] / (1 << 30)
        assert abs(gib - VIDEO[name].resident_gib) < 0.1 * VIDEO[name].resident_gib  # the registry's figure
        # what the model cards say it runs in with offload
        assert plan["peak_bytes"]["offload"] / (1 << 30) <= VIDEO[name].gpu_gib + 1.0
        assert plan["path_peak_bytes"]["offload"] >= plan["peak_bytes"]["offload"]
