"""Reading meshes and mesh sequences, and writing meshes and results atomically.

Vertex order is the contract with the add-on and with scripts: a reference is read with
`trimesh.load(path, process=False, force="mesh")`, which never merges, drops or reorders
vertices, so offsets[t, i] belongs to the i-th vertex of the file as written.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInput
from .files import as_created

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".glb", ".gltf", ".off")
# Beyond this a reference is refused up front rather than risking hours or swap on a laptop.
MAX_REFERENCE_VERTICES = 2_000_000


@dataclass
class Mesh:
    vertices: np.ndarray  # [V,3] float64
    faces: np.ndarray  # [F,3] int64
    source: str = ""


def load_mesh(path: str | os.PathLike, *, role: str = "mesh") -> Mesh:
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{role} file not found: {path}")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise BadInput(f"{role} {path.name}: unsupported format {path.suffix!r}; "
                       f"use one of {', '.join(MESH_SUFFIXES)}")
    try:
        mesh = trimesh.load(str(path), process=False, force="mesh")
    except Exception as exc:  # trimesh raises many types on corrupt files
        raise BadInput(f"{role} {path.name} could not be read as a mesh: {exc}") from exc
    # Rounded to float32, the precision Blender and glTF store: the add-on hands its meshes over
    # as float32, and the CLI must register exactly the same numbers to give the same result.
    vertices = np.asarray(getattr(mesh, "vertices", np.zeros((0, 3))), dtype=np.float32).astype(np.float64)
    faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))), dtype=np.int64)
    return validate_mesh(Mesh(vertices.reshape(-1, 3), faces.reshape(-1, 3), str(path)), role=role)


def validate_mesh(mesh: Mesh, *, role: str = "mesh") -> Mesh:
    name = Path(mesh.source).name or role
    if len(mesh.vertices) == 0 or len(mesh.faces) == 0:
        raise BadInput(f"{role} {name} is empty ({len(mesh.vertices)} vertices, {len(mesh.faces)} faces)")
    if not np.isfinite(mesh.vertices).all():
        bad = int((~np.isfinite(mesh.vertices)).any(axis=1).sum())
        raise BadInput(f"{role} {name} has {bad} vertices with NaN or infinite coordinates")
    if mesh.faces.min() < 0 or mesh.faces.max() >= len(mesh.vertices):
        raise BadInput(f"{role} {name} has face indices outside its {len(mesh.vertices)} vertices")
    return mesh


def list_sequence(directory: str | os.PathLike) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise BadInput(f"sequence folder not found: {directory}")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
    if not files:
        raise BadInput(f"sequence folder {directory} holds no mesh files ({', '.join(MESH_SUFFIXES)})")
    if len(files) < 2:
        raise BadInput(f"sequence folder {directory} holds only 1 frame ({files[0].name}); "
                       "an animation needs at least 2")
    return files


def atomic_write(path: Path, write) -> None:
    """Write via a temp file in the same folder, then rename: a killed job never leaves half a file.
    The file ends with a new file's permissions (mkstemp's are 0600; backend.io.files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=str(path.parent))
    os.close(fd)
    try:
        write(tmp)
        as_created(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_mesh(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray) -> None:
    """One static mesh in the format its suffix names (.obj, .ply, .glb, any trimesh writes)."""
    import trimesh

    path = Path(path)
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    atomic_write(path, lambda tmp: mesh.export(tmp, file_type=path.suffix.lower()[1:]))


def write_animation_npz(path: Path, vertices: np.ndarray, faces: np.ndarray, offsets: np.ndarray,
                        fps: float) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, vertices=vertices.astype(np.float32), faces=faces.astype(np.int64),
                     offsets=offsets.astype(np.float32), fps=np.float32(fps))

    atomic_write(path, write)


def load_npz(path: Path, kind: str, required) -> dict:
    """Every array of an .npz of ours (`kind`: "animation", "rig"; never unpickled) -> {name: array};
    BadInput for a missing file, one numpy cannot read, or one lacking a `required` array."""
    if not path.is_file():
        raise BadInput(f"{kind} file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {k: data[k] for k in data.files}
    except Exception as exc:
        raise BadInput(f"{path.name} is not a valid {kind}.npz: {exc}") from exc
    missing = sorted(set(required) - set(out))
    if missing:
        raise BadInput(f"{path.name} is not a valid {kind}.npz: it lacks {', '.join(missing)}")
    return out


def read_animation_npz(path: str | os.PathLike) -> dict:
    """Load and check an animation.npz; the add-on has its own numpy-only reader with the same checks."""
    path = Path(path)
    keys = ("vertices", "faces", "offsets", "fps")
    out = {k: v for k, v in load_npz(path, "animation", keys).items() if k in keys}
    v, o = out["vertices"], out["offsets"]
    if v.ndim != 2 or v.shape[1] != 3 or o.ndim != 3 or o.shape[1:] != v.shape:
        raise BadInput(f"{path.name}: offsets {o.shape} do not match vertices {v.shape}")
    if not np.isfinite(o).all():
        raise BadInput(f"{path.name}: offsets contain NaN or infinite values")
    return out
