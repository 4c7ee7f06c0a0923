"""`generate`: video -> animated mesh, end to end on the tiny random model set.

The tiny set's networks are random (the shape VAE is the shipped tiny one), so these tests check
the pipeline's contract, not the quality of the motion: inputs read and selected, the stages run
over the right windows with the right known frames, outputs on the right vertices, errors clear
and nothing left behind. The runs use default settings (the release's steps; the tiny set's own
64^3 grid and 64 tokens per frame), except the one that checks overrides are applied and recorded.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from backend_cli import run_backend

DEFAULTS = dict(device="cpu")  # default settings, on the CPU
# Overrides of every setting generate takes from the release or the model set.
OVERRIDE_ARGS = ["--stage0-steps", "2", "--stage1-steps", "1", "--resolution", "32", "--device", "cpu"]


def _leftovers(parent: Path, name: str) -> list:
    """Hidden work folders of an output called `name` (there must be none after any run)."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def _panda(shared_examples) -> Path:
    return shared_examples / "panda"


def _load_panda(shared_examples):
    import trimesh

    return trimesh.load(str(_panda(shared_examples) / "panda.glb"), process=False, force="mesh")


@pytest.fixture(scope="module")
def clip50(shared_examples, tmp_path_factory) -> Path:
    """50 frames (four Stage I windows): the 16 panda frames forward, backward, forward again."""
    folder = tmp_path_factory.mktemp("clip50")
    frames = sorted(_panda(shared_examples).glob("*.png"))
    order = list(range(16)) + list(range(14, -1, -1)) + list(range(1, 16)) + list(range(14, 10, -1))
    assert len(order) == 50
    for i, j in enumerate(order):
        (folder / f"frame_{i}.png").symlink_to(frames[j])  # natural order: frame_2 before frame_10
    return folder


@pytest.fixture(scope="module")
def video(shared_examples, tmp_path_factory):
    """(mp4 without alpha, folder of one mask per video frame): the RGBA panda frames composited
    on a coloured background at 256 px, written at 12 fps with OpenCV."""
    import cv2
    from PIL import Image

    root = tmp_path_factory.mktemp("video")
    masks = root / "masks"
    masks.mkdir()
    path = root / "panda.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (256, 256))
    assert writer.isOpened()
    for i, frame in enumerate(sorted(_panda(shared_examples).glob("*.png"))):
        rgba = np.asarray(Image.open(frame).convert("RGBA").resize((256, 256), Image.BILINEAR)).astype(np.float32)
        alpha = rgba[..., 3:] / 255.0
        rgb = rgba[..., :3] * alpha + np.array([40.0, 160.0, 90.0]) * (1.0 - alpha)
        writer.write(cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_RGB2BGR))
        Image.fromarray(rgba[..., 3].astype(np.uint8)).save(masks / f"mask_{i}.png")
    writer.release()
    return path, masks


# ------------------------------------------------------------------ reading the input


def test_read_frames_folder_video_array(shared_examples, video):
    from backend.errors import BadInput
    from backend.io import read_frames

    clip = read_frames(_panda(shared_examples), start=1, frames=5, stride=3, fps=30)
    assert clip.frames.shape == (5, 512, 512, 4) and clip.indices == [1, 4, 7, 10, 13]
    assert clip.names == ["01.png", "04.png", "07.png", "10.png", "13.png"] and clip.fps == 10.0

    path, _ = video
    whole = read_frames(path)
    assert whole.frames.shape == (16, 256, 256, 3) and whole.fps == pytest.approx(12.0)
    assert whole.source_frames == 16
    part = read_frames(path, start=14)
    assert part.indices == [14, 15]
    with pytest.raises(BadInput, match="outside"):
        read_frames(path, start=16)
    with pytest.raises(BadInput, match="has 16"):
        read_frames(path, start=10, frames=4, stride=2)

    array = read_frames(whole.frames, frames=3)
    assert array.frames.shape == (3, 256, 256, 3) and array.fps == 24.0
    with pytest.raises(BadInput, match="at least 2"):
        read_frames(whole.frames[:1])

    # A cap (the learned job's 31): taken only when no count is asked for; more_frames says whether
    # the selection went on past it, for a folder, a video (decoded one frame past the cap) and an array.
    for source in (_panda(shared_examples), path, whole.frames):
        capped = read_frames(source, start=1, stride=2, max_frames=5)
        assert capped.indices == [1, 3, 5, 7, 9] and capped.more_frames
        assert not read_frames(source, start=1, stride=2, max_frames=8).more_frames  # 8 = all there are
        assert len(read_frames(source, frames=12, max_frames=5)) == 12
        assert not read_frames(source, frames=12).more_frames


# ------------------------------------------------------------------ end to end


def test_generate_from_frames_cli(tiny_models, shared_examples, tmp_path):
    """Stage 0 (TripoSG) from the panda's frame 0, Stage I and II, through the CLI."""
    import trimesh

    models, _, _ = tiny_models
    out = tmp_path / "out"
    proc = run_backend("generate", "--input", _panda(shared_examples), "--out", out, "--models-dir", models,
                       "--frames", "5", "--stage1-meshes", "--json", *OVERRIDE_ARGS)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["frames"] == 5 and result["fps"] == 24.0
    for stage in ("stage0", "stage1", "stage2"):
        assert f"] {stage}" in proc.stderr  # per-stage progress on the console

    with np.load(out / "animation.npz") as data:
        vertices, faces, offsets, fps = data["vertices"], data["faces"], data["offsets"], float(data["fps"])
    anchor = trimesh.load(str(out / "anchor.glb"), process=False, force="mesh")
    assert offsets.shape == (5, len(vertices), 3) and len(anchor.vertices) == len(vertices) == result["vertices"]
    assert np.array_equal(anchor.faces, faces) and fps == 24.0
    assert np.all(offsets[0] == 0) and np.isfinite(offsets).all() and np.abs(offsets[1:]).max() > 0
    # The generated anchor lies in the model's box.
    assert np.abs(vertices).max() <= 1.01
    assert (out / "animated.glb").stat().st_size > 0

    report = json.loads((out / "report.json").read_text())
    assert report["seed"] == 44 and report["settings"]["stage0"] == "triposg"
    assert report["settings"]["stage0_steps"] == 2 and report["settings"]["stage0_guidance"] == 7.5
    assert report["settings"]["resolution"] == 32 and report["settings"]["stage1_steps"] == 1
    assert report["settings_sources"] == {
        "stage0_steps": "argument", "stage1_steps": "argument", "resolution": "argument", "face_budget": "release",
        "latent_tokens": "model set: denoiser/config.json num_tokens_nominal"}
    assert set(report["stages"]) >= {"stage0", "stage1", "stage2"}
    assert all(s["seconds"] >= 0 for s in report["stages"].values())
    assert set(report["models"]) == {"actionmesh", "dinov2", "triposg"}
    latents = np.load(out / "stage1" / "latents.npy")
    assert latents.shape[0] == 5 and len(list((out / "stage1").glob("frame_*.glb"))) == 5
    assert _leftovers(tmp_path, "out") == []


def test_generate_mesh_long_clip_known_loop_offline(tiny_models, clip50, tmp_path, monkeypatch):
    """--mesh over 50 frames asked for (four windows, past the release's 31: warned) with keyframes
    in the second and third windows and --loop, so the last window starts with 12 known frames;
    models read from an offline hub cache. The result is on the mesh's own vertices; the latents
    Stage I hands to Stage II have frames 20 and 40 = the keyframes' encodings and the last frame
    = the first. (A small mesh keeps Stage II cheap; panda.glb's own vertices are checked in the
    video test.)"""
    import torch
    import trimesh

    from backend.hub import get_model
    from backend.io.mesh import load_mesh
    from backend.jobs import JobContext
    from backend.models.vae import ShapeVAE
    from backend.geometry.weld import weld
    from backend.pipelines import generate
    from backend.pipelines.generate.anchor import anchor_from_mesh, encode_mesh

    _, cache, _ = tiny_models
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.4)
    anchor_path, keyframe = tmp_path / "ball.ply", tmp_path / "squashed.ply"
    trimesh.Trimesh(sphere.vertices + [0.2, 0.1, 0.0], sphere.faces, process=False).export(str(anchor_path))
    squashed = sphere.vertices * np.array([1.3, 0.6, 1.1]) + np.array([0.3, 0.0, -0.1])
    trimesh.Trimesh(squashed, sphere.faces, process=False).export(str(keyframe))
    stretched = tmp_path / "stretched.ply"
    trimesh.Trimesh(sphere.vertices * np.array([0.7, 1.4, 0.9]), sphere.faces, process=False).export(str(stretched))

    used = {}

    def stage2_spy(ctx, autoencoder, latents, anchor, **kwargs):  # what Stage I handed over
        used["latents"] = latents.clone()
        return real_stage2(ctx, autoencoder, latents, anchor, **kwargs)

    real_stage2 = generate.stage2_positions
    monkeypatch.setattr(generate, "stage2_positions", stage2_spy)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    generate.run_generate(JobContext(), input=str(clip50), out=str(out), mesh=str(anchor_path), frames=50,
                          known=[f"20={keyframe}", f"40={stretched}"], loop=True, device="cpu")

    given = load_mesh(anchor_path)
    with np.load(out / "animation.npz") as data:
        vertices, faces, offsets = data["vertices"], data["faces"], data["offsets"]
    assert np.array_equal(vertices, given.vertices.astype(np.float32)) and np.array_equal(faces, given.faces)
    assert offsets.shape == (50, len(vertices), 3) and np.all(offsets[0] == 0) and np.isfinite(offsets).all()

    report = json.loads((out / "report.json").read_text())
    windows = report["settings"]["windows"]
    assert windows == [list(range(0, 16)), list(range(15, 31)), list(range(30, 46)), list(range(34, 50))]
    assert report["settings"]["known_frames"] == [0, 20, 40, 49]
    assert any("50 frames run as 4 windows" in w for w in report["warnings"]), report["warnings"]
    spec = get_model("triposg")
    assert report["models"]["triposg"]["found_revision"] == spec.revision

    latents = used["latents"]
    assert latents.shape[0] == 50 and torch.equal(latents[49], latents[0])  # --loop
    anchor = anchor_from_mesh(given.vertices, given.faces)
    key = load_mesh(keyframe)
    kv, kf, _ = weld((key.vertices - anchor.center) * anchor.scale, key.faces)
    folder = cache / f"models--{spec.org}--{spec.repo_name}" / "snapshots" / spec.revision / "vae"
    vae = ShapeVAE.from_pretrained(folder)
    expected = encode_mesh(vae, kv, kf, seed=44, device="cpu", num_tokens=latents.shape[1])
    assert torch.equal(latents[20], expected)
    assert not torch.allclose(latents[20], latents[0], atol=1e-3)  # the keyframe is not the anchor's shape
    key = load_mesh(stretched)
    kv, kf, _ = weld((key.vertices - anchor.center) * anchor.scale, key.faces)
    assert torch.equal(latents[40], encode_mesh(vae, kv, kf, seed=44, device="cpu",
                                                         num_tokens=latents.shape[1]))


def test_clip_length_is_the_releases_unless_asked(tiny_models, clip50, tmp_path, monkeypatch):
    """Without --frames a learned job reads the release's 31 frames of a longer clip (a keyframe at
    frame 40 is then outside it, refused before any model runs); the warnings say what a length
    outside 16-31 means."""
    from backend.errors import BadInput
    from backend.jobs import JobContext
    from backend.pipelines import generate

    _, cache, _ = tiny_models
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import trimesh

    keyframe = tmp_path / "k.ply"
    trimesh.creation.icosphere(subdivisions=1).export(str(keyframe))
    with pytest.raises(BadInput, match=r"outside the clip's frames 1\.\.30"):
        generate.run_generate(JobContext(), input=str(clip50), out=str(tmp_path / "out"),
                              known=[f"40={keyframe}"], device="cpu")
    assert not (tmp_path / "out").exists()
    first, = generate.clip_length_warnings(31, True)
    assert "first 31 were used" in first and "--frames N" in first
    assert generate.clip_length_warnings(31, False) == generate.clip_length_warnings(16, False) == []
    assert "one window of 9 frames" in generate.clip_length_warnings(9, False)[0]
    assert "3 windows" in generate.clip_length_warnings(40, False)[0]


def test_generate_video_with_masks_is_deterministic(tiny_models, shared_examples, video, tmp_path):
    """An mp4 without alpha, masks from a folder (one per video frame, picked by index), a frame
    selection with a stride; the same seed twice gives the same animation."""
    from backend.jobs import JobContext
    from backend.pipelines import run_generate

    models, _, _ = tiny_models
    path, masks = video
    events = []
    kwargs = dict(input=str(path), masks=str(masks), mesh=str(_panda(shared_examples) / "panda.glb"), start=2,
                  frames=3, stride=3, models_dir=str(models), **DEFAULTS)
    first = run_generate(JobContext(lambda *e: events.append(e)), out=str(tmp_path / "a"), **kwargs)
    second = run_generate(JobContext(), out=str(tmp_path / "b"), **kwargs)
    # --low-vram: the guidance batch in two passes, smaller chunks: the same numbers up to rounding.
    run_generate(JobContext(), out=str(tmp_path / "c"), low_vram=True, **kwargs)
    assert first["frames"] == 3 and first["fps"] == pytest.approx(4.0)  # 12 fps, every 3rd frame
    panda = _load_panda(shared_examples)
    with np.load(tmp_path / "a" / "animation.npz") as a, np.load(tmp_path / "b" / "animation.npz") as b:
        # panda.glb's own vertices, order and faces (its UV seams are not welded away).
        assert np.array_equal(a["vertices"], np.asarray(panda.vertices, dtype=np.float32))
        assert np.array_equal(a["faces"], panda.faces)
        assert a["offsets"].shape == (3, len(panda.vertices), 3) and np.all(a["offsets"][0] == 0)
        assert np.array_equal(a["offsets"], b["offsets"])
        with np.load(tmp_path / "c" / "animation.npz") as c:
            assert np.allclose(a["offsets"], c["offsets"], atol=1e-4)
    assert second["vertices"] == first["vertices"]
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["input"]["indices"] == [2, 5, 8]
    stages = [e[0] for e in events]
    assert stages.index("stage0") < stages.index("stage1") < stages.index("stage2") < stages.index("write")
    assert any("window 1/1" in e[3] for e in events if e[0] == "stage1")


def test_earlier_result_is_replaced_other_folders_refused(tiny_models, shared_examples, tmp_path):
    from backend.errors import BadInput
    from backend.jobs import JobContext
    from backend.pipelines import run_generate

    models, _, _ = tiny_models
    kwargs = dict(input=str(_panda(shared_examples)), frames=2, mesh=str(_panda(shared_examples) / "panda.glb"),
                  models_dir=str(models), **DEFAULTS)
    out = tmp_path / "out"
    run_generate(JobContext(), out=str(out), **kwargs)
    (out / "note.txt").write_text("an earlier result's extra file")
    run_generate(JobContext(), out=str(out), seed=7, **kwargs)
    assert json.loads((out / "report.json").read_text())["seed"] == 7 and not (out / "note.txt").exists()
    assert _leftovers(tmp_path, "out") == []
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("not ours")
    with pytest.raises(BadInput, match="not empty"):
        run_generate(JobContext(), out=str(other), **kwargs)
    assert sorted(p.name for p in other.iterdir()) == ["keep.txt"]


def test_cancel_leaves_nothing(tiny_models, shared_examples, tmp_path):
    from backend.errors import Cancelled
    from backend.jobs import JobContext
    from backend.pipelines import run_generate

    models, _, _ = tiny_models
    cancel = threading.Event()

    def sink(stage, step, total, message):
        if stage == "stage2":
            cancel.set()  # the next progress report raises

    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        run_generate(JobContext(sink, cancel), input=str(_panda(shared_examples)), out=str(out), frames=3,
                     mesh=str(_panda(shared_examples) / "panda.glb"), models_dir=str(models), **DEFAULTS)
    assert not out.exists() and _leftovers(tmp_path, "out") == []


def test_resolution_is_the_model_sets_own_else_the_releases(tiny_models, shared_examples, tmp_path):
    """The tiny set carries its own extraction grid (a private key of TripoSG's model_index.json);
    a set without one (as the release's folders are) gets the release's 512; report.json says
    where each setting came from."""
    from backend.errors import BadInput
    from backend.hub.tiny import MODEL_INDEX
    from backend.jobs import JobContext
    from backend.pipelines import run_generate
    from backend.pipelines.generate.anchor import EXTRACT_RESOLUTION
    from backend.pipelines.generate.inputs import MODEL_SET_DEFAULTS_KEY, model_set_defaults

    models, _, _ = tiny_models
    assert model_set_defaults(models / "VAST-AI" / "TripoSG") == {"resolution": 64}
    assert MODEL_SET_DEFAULTS_KEY not in MODEL_INDEX  # our mirror of the release's model_index.json

    plain = tmp_path / "models"
    shutil.copytree(models, plain)
    index = plain / "VAST-AI" / "TripoSG" / "model_index.json"
    index.write_text(json.dumps(MODEL_INDEX))
    assert model_set_defaults(index.parent) == {}
    out = tmp_path / "out"
    run_generate(JobContext(), input=str(_panda(shared_examples)), out=str(out), frames=2,
                 mesh=str(_panda(shared_examples) / "panda.glb"), models_dir=str(plain), **DEFAULTS)
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["resolution"] == EXTRACT_RESOLUTION == 512
    assert report["settings_sources"]["resolution"] == "release"
    assert report["settings_sources"]["stage1_steps"] == "release" and report["settings"]["stage1_steps"] == 30

    index.write_text(json.dumps({**MODEL_INDEX, MODEL_SET_DEFAULTS_KEY: 64}))
    with pytest.raises(BadInput, match=MODEL_SET_DEFAULTS_KEY):
        model_set_defaults(index.parent)


def test_generate_is_a_service_command():
    from backend.pipelines import COMMANDS, run_generate
    from backend.service import _check_args

    assert COMMANDS["generate"] is run_generate
    assert _check_args(run_generate, {"input": "clip.mp4", "out": "o", "known": {"5": "k.glb"}, "loop": True}) == ""
    assert "missing" in _check_args(run_generate, {"input": "clip.mp4"})


# ------------------------------------------------------------------ bad input: a clear error, nothing written


def _write_png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(array).save(path)
    return path


def _frames_folder(tmp_path: Path, name: str, arrays) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for i, a in enumerate(arrays):
        _write_png(folder / f"{i:02d}.png", a)
    return folder


def _rgba(size=64, alpha=255):
    image = np.zeros((size, size, 4), dtype=np.uint8)
    image[16:48, 16:48] = (200, 100, 50, alpha)
    return image


def _bad_cases(tmp_path: Path, shared_examples, video, models):
    panda = _panda(shared_examples)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 10)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    no_faces = tmp_path / "points.obj"
    no_faces.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    nan_mesh = tmp_path / "nan.obj"
    nan_mesh.write_text("v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n")
    partial = tmp_path / "partial_models"
    shutil.copytree(models, partial)
    (partial / "facebook" / "ActionMesh" / "autoencoder" / "model.safetensors").unlink()
    ok = dict(input=str(panda), models_dir=str(models))
    return {
        "one frame": (dict(ok, input=str(_frames_folder(tmp_path, "one", [_rgba()]))), "at least 2"),
        "garbage video": (dict(ok, input=str(garbage)), "cannot open|no frames"),
        "empty video": (dict(ok, input=str(empty)), "cannot open|no frames"),
        "sizes differ": (dict(ok, input=str(_frames_folder(tmp_path, "sizes", [_rgba(64), _rgba(80)]))), "same size"),
        "transparent": (dict(ok, input=str(_frames_folder(tmp_path, "clear", [_rgba(alpha=0)] * 3))),
                        "fully transparent"),
        "no alpha, no remover": (dict(ok, input=str(video[0])), "no alpha and no background remover"),
        "missing model": (dict(ok, models_dir=str(tmp_path / "no_models")), "facebook/ActionMesh is missing"),
        "partial model": (dict(ok, models_dir=str(partial)), "facebook/ActionMesh is partial"),
        "known outside": (dict(ok, known=[f"16={panda / 'panda.glb'}"]), "outside the clip"),
        "known zero": (dict(ok, known={0: str(panda / "panda.glb")}), "outside the clip"),
        "mesh without faces": (dict(ok, mesh=str(no_faces)), "empty"),
        "mesh with NaN": (dict(ok, mesh=str(nan_mesh)), "NaN"),
        "start outside": (dict(ok, start=20), "outside"),
    }


def test_bad_inputs_fail_clearly_and_write_nothing(tiny_models, shared_examples, video, tmp_path):
    import torch

    from backend.errors import BackendError
    from backend.jobs import JobContext
    from backend.pipelines import run_generate

    models, _, _ = tiny_models
    cases = _bad_cases(tmp_path, shared_examples, video, models)
    if not torch.cuda.is_available():
        cases["cuda without CUDA"] = (dict(input=str(_panda(shared_examples)), models_dir=str(models),
                                           device="cuda"), "no CUDA")
    failures = []
    for name, (kwargs, pattern) in cases.items():
        out = tmp_path / f"out_{name.replace(' ', '_').replace(',', '')}"
        try:
            run_generate(JobContext(), out=str(out), **{"device": "cpu", **kwargs})
            failures.append(f"{name}: no error")
        except BackendError as exc:
            import re

            if exc.code not in ("bad_input", "missing_model") or not re.search(pattern, exc.message):
                failures.append(f"{name}: {exc.code}: {exc.message}")
        if out.exists() or _leftovers(tmp_path, out.name):
            failures.append(f"{name}: wrote {out}")
    assert not failures, "\n".join(failures)


def test_cli_bad_input_exits_2(tmp_path, shared_examples):
    out = tmp_path / "out"
    proc = run_backend("generate", "--input", _panda(shared_examples), "--out", out, "--models-dir", tmp_path / "none",
                       "--device", "cpu")
    assert proc.returncode == 2, proc.stderr
    assert "missing_model" in proc.stderr and "models download actionmesh" in proc.stderr
    assert not out.exists()


def test_released_size_models_on_the_cpu_are_warned_about_at_the_start(tiny_models, shared_examples, tmp_path):
    """A set whose denoiser has the released width, on the CPU: the warning comes first (as a
    progress line, before any work), then this stand-in's weights are refused by name."""
    models = tmp_path / "models"
    shutil.copytree(tiny_models[0], models)
    config_path = models / "facebook" / "ActionMesh" / "denoiser" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "width": 2048}))
    proc = run_backend("generate", "--input", shared_examples / "panda", "--frames", "2", "--out", tmp_path / "out",
                       "--models-dir", models, "--device", "cpu")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    first = next(i for i, line in enumerate(lines) if "released models are running on the CPU" in line)
    assert first < next(i for i, line in enumerate(lines) if "reading" in line)
    assert "do not fit TemporalDenoiser" in proc.stderr and not (tmp_path / "out").exists()
