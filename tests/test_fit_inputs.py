"""`generate --method fit` on awkward input (issue 12's bad-input list): a mesh far smaller or
larger than the object in the frames, and a mesh with a loose part. Each runs to the end with a
clear warning where the result cannot be trusted; nothing crashes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from backend_cli import run_backend
from fit_case import case_mesh, render_case

LOW_IOU = "covers the object in frame 0 poorly"


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return render_case(tmp_path_factory.mktemp("fit_inputs"), frames=4, size=96)


def _mesh(case, tmp_path, name, transform):
    from backend.io.mesh import load_mesh

    mesh = load_mesh(case_mesh(case))
    vertices, faces = transform(mesh.vertices.copy(), mesh.faces.copy())
    path = tmp_path / f"{name}.ply"
    trimesh.Trimesh(vertices, faces, process=False).export(path)
    return path


def _fit(case, mesh, out, *extra):
    proc = run_backend("generate", "--input", case / "frames", "--mesh", mesh, "--out", out, "--method", "fit",
                       "--json", *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    with np.load(out / "animation.npz") as npz:
        assert np.isfinite(npz["offsets"]).all()
    return result, proc.stderr


def test_the_right_mesh_through_the_right_camera_is_not_warned_about(case, tmp_path):
    result, _ = _fit(case, case_mesh(case), tmp_path / "out", "--camera", case / "camera.json")
    assert not any(LOW_IOU in w for w in result["warnings"]), result["warnings"]
    assert result["fit"]["camera_iou"] > 0.7, result


@pytest.mark.parametrize("scale", [0.1, 10.0])
def test_a_mesh_of_the_wrong_size_is_warned_about_with_the_given_camera(case, tmp_path, scale):
    def rescale(v, f):
        centre = (v.max(0) + v.min(0)) / 2
        return centre + (v - centre) * scale, f

    mesh = _mesh(case, tmp_path, f"scaled_{scale}", rescale)
    result, stderr = _fit(case, mesh, tmp_path / "out", "--camera", case / "camera.json")
    assert any(LOW_IOU in w for w in result["warnings"]), result
    assert LOW_IOU in stderr  # the CLI prints it too


def test_refuse_mismatch_fails_with_the_warnings_words_and_writes_nothing(case, tmp_path):
    """What motion transfer asks for: the wrong-size mesh through the given camera is refused (exit
    2, the low-agreement words, no output folder) instead of written with a warning."""
    mesh = _mesh(case, tmp_path, "tiny", lambda v, f: ((v - v.mean(0)) * 0.1 + v.mean(0), f))
    out = tmp_path / "out"
    proc = run_backend("generate", "--input", case / "frames", "--mesh", mesh, "--out", out, "--method", "fit",
                       "--camera", case / "camera.json", "--refuse-mismatch")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert LOW_IOU in proc.stderr and "Nothing was written" in proc.stderr
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())
    # The right mesh is not refused: the flag changes nothing where the warning would not fire.
    result, _ = _fit(case, case_mesh(case), tmp_path / "ok", "--camera", case / "camera.json", "--refuse-mismatch")
    assert result["fit"]["camera_iou"] > 0.7


def test_an_estimated_camera_takes_the_size_as_it_comes(case, tmp_path):
    def shrink(v, f):
        return v * 0.1, f

    mesh = _mesh(case, tmp_path, "small", shrink)
    result, _ = _fit(case, mesh, tmp_path / "out")
    assert result["fit"]["camera_estimated"] and result["fit"]["camera_iou"] > 0.5, result
    assert not any(LOW_IOU in w for w in result["warnings"]), result["warnings"]


def test_a_mesh_with_a_loose_part_is_fitted(case, tmp_path):
    def add_box(v, f):
        size = v.max(0) - v.min(0)
        box = trimesh.creation.box(extents=size * 0.15)
        box.apply_translation(v.max(0) + size * 0.1)  # beside the body, touching nothing
        return np.concatenate([v, box.vertices]), np.concatenate([f, box.faces + len(v)])

    mesh = _mesh(case, tmp_path, "loose", add_box)
    result, _ = _fit(case, mesh, tmp_path / "out", "--camera", case / "camera.json")
    assert result["vertices"] == len(trimesh.load(mesh, process=False).vertices)
    assert result["fit"]["after"] >= result["fit"]["before"] - 0.02, result
