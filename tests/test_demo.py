"""`python3 build.py demo`'s Blender side (tools/blender_demo.py) in real Blender 5.0: the panda
animated from its video by fitting, saved and previewed; and the fallback a clone without the
shared example data gets (the mesh-sequence job)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np

from blender_harness import REPO, blender_env

DEMO = REPO / "tools" / "blender_demo.py"


def _run_demo(extension_zip, out, *extra):
    env = blender_env("5.0", {"BLENDER_USER_RESOURCES": out / "blender_user"})
    env.setdefault("ACTIONMESH_BACKEND_PYTHON", sys.executable)
    return subprocess.run([sys.executable, str(DEMO), "--extension", extension_zip, "--out", str(out), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def _preview(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


def test_demo_animates_the_panda_from_its_video(extension_zip, shared_examples, tmp_path):
    clip = tmp_path / "clip"
    clip.mkdir()
    for i in range(0, 16, 3):  # 6 frames keep the test short; the demo itself uses all 16
        shutil.copy(shared_examples / "panda" / f"{i:02d}.png", clip / f"{i:02d}.png")
    out = tmp_path / "demo"
    proc = _run_demo(extension_zip, out, "--clip", str(clip), "--mesh", str(shared_examples / "panda" / "panda.glb"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "6 shape keys" in proc.stdout and "estimated camera" in proc.stdout
    assert (out / "actionmesh_demo.blend").is_file()
    preview = _preview(out / "preview.png")
    assert preview.shape == (2 * 320, 4 * 320, 3)  # the renders under the video's frames
    # Each render shows the panda (dark fur on a light background) where the video shows it.
    video, render = preview[:320], preview[320:]
    for i in range(4):
        seen = video[:, 320 * i:320 * (i + 1)].mean(axis=2) < 100
        drawn = render[:, 320 * i:320 * (i + 1)].mean(axis=2) < 100
        overlap = (seen & drawn).sum() / max(1, (seen | drawn).sum())
        assert overlap > 0.4, (i, overlap)


def test_demo_without_the_example_data_runs_the_sequence_job(extension_zip, tmp_path):
    out = tmp_path / "demo"
    proc = _run_demo(extension_zip, out, "--clip", str(tmp_path / "absent"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no example video here" in proc.stdout and "16 shape keys" in proc.stdout
    assert (out / "actionmesh_demo.blend").is_file() and (out / "preview.png").is_file()
