"""Real animated game characters: Quake II MD2 models (vertex animation, one topology).

MD2 stores every keyframe's vertex positions, so an MD2 clip is an animated character with
exact ground truth for each vertex, made by an artist, not by our generators. Two such models
(Irrlicht's "sydney" and "faerie", zlib-style licence) ship in Debian's `assimp-testmodels`
package; `python3 build.py setup` unpacks its MD2 folder into .venv/share/assimp-testmodels
(`find_md2`). Quake winds MD2 triangles clockwise, so these references come inward-wound, open
at seams and in several intersecting parts: the kind of mesh users bring.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
CHARACTERS = ("sydney", "faerie")
_SEARCH = (REPO / ".venv" / "share" / "assimp-testmodels" / "MD2", Path("/usr/share/assimp/models/MD2"))


def md2_folder() -> Path | None:
    """Where the MD2 characters are: $ACTIONMESH_MD2_DIR, else the setup's copy, else Debian's."""
    env = os.environ.get("ACTIONMESH_MD2_DIR")
    for folder in ([Path(env)] if env else []) + list(_SEARCH):
        if all((folder / f"{name}.md2").is_file() for name in CHARACTERS):
            return folder
    return None


def read_md2(path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(keyframes [K,V,3] float64, triangles [F,3] int64, keyframe names) of an MD2 file."""
    data = Path(path).read_bytes()
    if len(data) < 68 or data[:4] != b"IDP2":
        raise ValueError(f"{path}: not an MD2 file")
    (version, _, _, frame_size, _, n_vert, _, n_tri, _, n_frames, _, _, ofs_tris, ofs_frames, _,
     _) = struct.unpack_from("<16i", data, 4)
    if version != 8 or n_vert <= 0 or n_tri <= 0 or n_frames <= 0:
        raise ValueError(f"{path}: unsupported MD2 header (version {version})")
    # A triangle: 3 vertex indices then 3 texture-coordinate indices (int16 each).
    tris = np.frombuffer(data, "<i2", n_tri * 6, ofs_tris).reshape(n_tri, 6)[:, :3].astype(np.int64)
    frames, names = [], []
    for k in range(n_frames):
        o = ofs_frames + k * frame_size
        scale = np.array(struct.unpack_from("<3f", data, o))
        shift = np.array(struct.unpack_from("<3f", data, o + 12))
        names.append(data[o + 24:o + 40].split(b"\0")[0].decode("ascii", "replace"))
        packed = np.frombuffer(data, np.uint8, n_vert * 4, o + 40).reshape(n_vert, 4)[:, :3]
        frames.append(packed * scale + shift)
    return np.stack(frames), tris, names


def read_md2_uv(path) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """The texture mapping of an MD2 file: (uv [S,2] float64, uv_tris [F,3] int64, (skin width,
    skin height)); triangle f's corner k has texture coordinate uv[uv_tris[f, k]].

    A separate function, so `read_md2`'s (keyframes, tris, names) stays as its callers use it.
    MD2 keeps texture coordinates apart from vertices (a vertex on a UV seam has several), as
    integer texel positions (s, t) with t counted down from the skin's top row; uv here is
    (s / width, 1 - t / height), origin at the bottom-left as in Blender, OBJ and trimesh."""
    data = Path(path).read_bytes()
    if len(data) < 68 or data[:4] != b"IDP2":
        raise ValueError(f"{path}: not an MD2 file")
    (version, skin_w, skin_h, _, _, _, n_st, n_tri, _, _, _, ofs_st, ofs_tris, _, _,
     _) = struct.unpack_from("<16i", data, 4)
    if version != 8 or n_st <= 0 or n_tri <= 0 or skin_w <= 0 or skin_h <= 0:
        raise ValueError(f"{path}: unsupported MD2 header (version {version})")
    st = np.frombuffer(data, "<i2", n_st * 2, ofs_st).reshape(n_st, 2).astype(np.float64)
    uv = np.stack([st[:, 0] / skin_w, 1.0 - st[:, 1] / skin_h], axis=1)
    uv_tris = np.frombuffer(data, "<i2", n_tri * 6, ofs_tris).reshape(n_tri, 6)[:, 3:].astype(np.int64)
    if uv_tris.min() < 0 or uv_tris.max() >= n_st:
        raise ValueError(f"{path}: texture-coordinate index outside its {n_st} entries")
    return uv, uv_tris, (skin_w, skin_h)


def animation(names: list[str], prefix: str) -> np.ndarray:
    """Indices of the keyframes of one animation (names like run1, run002...) in play order."""
    idx = [i for i, n in enumerate(names) if re.fullmatch(re.escape(prefix) + r"\d+", n)]
    if not idx:
        known = sorted({re.sub(r"\d+$", "", n) for n in names})
        raise ValueError(f"no animation {prefix!r} among {known}")
    return np.asarray(idx)


def play(keyframes: np.ndarray, keys: np.ndarray, n_frames: int, cycles: float = 1.0) -> np.ndarray:
    """`n_frames` poses over `cycles` loops of the keyframes `keys`, linearly interpolated as the
    Quake engine plays MD2 animations: [n_frames, V, 3]."""
    s = np.arange(n_frames) * (len(keys) * cycles / n_frames)
    a = np.floor(s).astype(int)
    w = (s - a)[:, None, None]
    return (1 - w) * keyframes[keys[a % len(keys)]] + w * keyframes[keys[(a + 1) % len(keys)]]
