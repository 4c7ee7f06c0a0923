"""tools/render_fit_cases.py: rendered fitting cases whose truth and camera agree with the pixels.

One small panda case is rendered for real (bpy, Cycles on the CPU, a few seconds); projecting its
true vertices through camera.json must land on the rendered object, which pins down the camera
convention the fitter will rely on. The MD2 part checks the texture mapping and the written
mesh without rendering.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "render_fit_cases.py"
FRAMES, SIZE = 4, 128


def _tool():
    spec = importlib.util.spec_from_file_location("render_fit_cases", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def _project(camera: dict, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (u, v) and depth of mesh-frame points, read straight from camera.json's convention."""
    w2c = np.asarray(camera["world_to_camera"])
    k = camera["intrinsics"]
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    uv = np.stack([k["fx"] * cam[:, 0] / cam[:, 2] + k["cx"], k["fy"] * cam[:, 1] / cam[:, 2] + k["cy"]], axis=1)
    return uv, cam[:, 2]


def test_panda_case_renders_with_a_consistent_camera(tmp_path, shared_examples):
    from backend.meshio import load_mesh

    panda = shared_examples / "panda" / "panda.glb"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--cases", "panda-bend",
                           "--frames", str(FRAMES), "--size", str(SIZE), "--samples", "4", "--no-denoise",
                           "--panda", str(panda)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    case_dir = tmp_path / "panda-bend"
    info = json.loads((case_dir / "case.json").read_text())
    camera = json.loads((case_dir / "camera.json").read_text())
    truth = np.load(case_dir / "truth.npz")
    rest = load_mesh(info["mesh"])

    assert info["frames"] == FRAMES and info["motion"] == "bend_hinge_squash"
    assert truth["vertices"].shape == (FRAMES, len(rest.vertices), 3)
    np.testing.assert_array_equal(truth["faces"], rest.faces)
    np.testing.assert_array_equal(truth["rest"], rest.vertices)  # truth is in the backend's order
    # bend_hinge_squash starts at the rest pose: frame 0 is the mesh file, to rounding.
    np.testing.assert_allclose(truth["vertices"][0], rest.vertices, rtol=0, atol=1e-9)
    assert info["frame0_is_rest"]
    assert 0.02 < info["displacement_over_diagonal"]["max"] < 1.0  # it moves, but stays a panda
    assert camera["intrinsics"]["width"] == camera["intrinsics"]["height"] == SIZE
    assert "OpenCV" in camera["convention"]

    for t in range(FRAMES):
        image = Image.open(case_dir / "frames" / f"{t:02d}.png")
        assert image.mode == "RGBA" and image.size == (SIZE, SIZE)
        alpha = np.asarray(image)[..., 3]
        covered = (alpha > 0).mean()
        assert 0.02 < covered < 0.9, f"frame {t}: alpha covers {covered:.3f} of the image"
        uv, depth = _project(camera, truth["vertices"][t])
        assert (depth > 0).all(), "vertices behind the camera"
        # The whole motion is framed with margin: every vertex projects inside the image.
        assert (uv >= 0).all() and (uv <= SIZE - 1).all(), f"frame {t}: vertices project outside the image"
        i, j = np.round(uv).astype(int).T
        on_object = (alpha[j, i] > 0).mean()
        # Hidden vertices project onto the object too (it is in front of them), so nearly all
        # land on alpha; a wrong axis, flip or half-pixel-scale error would miss by far.
        assert on_object >= 0.95, f"frame {t}: only {on_object:.3f} of the vertices project onto the object"
    # And the object moves in the images, not only in truth.npz.
    first = np.asarray(Image.open(case_dir / "frames" / "00.png"))[..., 3] > 0
    last = np.asarray(Image.open(case_dir / "frames" / f"{FRAMES - 1:02d}.png"))[..., 3] > 0
    assert (first ^ last).mean() > 0.005


def test_md2_texture_coordinates_and_mesh_file(tmp_path):
    from backend.meshio import load_mesh
    from backend.synthetic.md2 import CHARACTERS, md2_folder, read_md2, read_md2_uv

    folder = md2_folder()
    if folder is None:
        reason = "the MD2 characters are not installed (python3 build.py setup unpacks them from assimp-testmodels)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; CI must have them")
        pytest.skip(reason)
    tool = _tool()
    for name in CHARACTERS:
        keyframes, tris, _ = read_md2(folder / f"{name}.md2")  # the old interface is unchanged
        uv, uv_tris, (width, height) = read_md2_uv(folder / f"{name}.md2")
        assert uv_tris.shape == tris.shape and width > 0 and height > 0
        assert (uv >= 0).all() and (uv <= 1).all()
        if not (folder / tool.MD2_SKINS[name]).is_file():
            # Setups from before build.py copied the .bmp skins have the models without them; a
            # fresh setup (CI's) always has them, so there it is a failure, not a skip.
            reason = f"{tool.MD2_SKINS[name]} is not next to the MD2 files: delete {folder} and rerun setup"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
        case = tool.md2_case(f"{name}-run", 16)
        # Split at UV seams only: every MD2 vertex is still there, each split copy moves alike.
        assert set(case.extra["md2_vertex"]) == set(range(keyframes.shape[1]))
        assert case.vertices.shape == (16, len(case.uv), 3)
        tool.write_mesh_glb(case, tmp_path / f"{name}.glb")  # checks its own round trip
        mesh = load_mesh(tmp_path / f"{name}.glb")
        np.testing.assert_array_equal(mesh.vertices, case.rest)
        np.testing.assert_array_equal(case.vertices[0], case.rest)  # the first pose is the mesh
        # Reversed from MD2's clockwise winding: the reference now encloses a positive volume.
        a, b, c = (mesh.vertices[mesh.faces[:, k]] for k in range(3))
        assert np.einsum("ij,ij->i", a, np.cross(b, c)).sum() > 0
