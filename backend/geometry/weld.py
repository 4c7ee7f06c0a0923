"""Welding: vertices that share a position move as one.

Exported meshes split vertices along UV and normal seams; solved or encoded as they are, each
piece would move on its own and the seams would open. Every solver and encoder welds first and
maps its result back through `inverse`, so the caller's vertex order and count never change.
"""

from __future__ import annotations

import numpy as np

# Positions closer than this fraction of the bounding-box diagonal are one vertex.
WELD_TOLERANCE = 1e-6


def weld_map(vertices, tolerance: float = WELD_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """(first, inverse): the index of one vertex per distinct position, and each vertex's welded
    index, so welded = vertices[first] and vertices ~= welded[inverse]."""
    v = np.asarray(vertices, dtype=np.float64)
    lo = v.min(axis=0)
    diag = float(np.linalg.norm(v.max(axis=0) - lo)) or 1.0
    # At 1e-6 of the diagonal every coordinate fits 21 bits: one int64 key per vertex, which
    # np.unique sorts far faster than rows.
    q = np.round((v - lo) / (diag * tolerance)).astype(np.int64)
    bits = max(21, int(q.max()).bit_length())
    if 3 * bits > 63:  # a coarser grid than 1e-6 never needs this; a finer one falls back to rows
        _, first, inverse = np.unique(q, axis=0, return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique((q[:, 0] << (2 * bits)) | (q[:, 1] << bits) | q[:, 2], return_index=True,
                                      return_inverse=True)
    return first, inverse.reshape(-1)


def weld(vertices, faces, tolerance: float = WELD_TOLERANCE):
    """(welded vertices, faces on them with degenerate ones dropped, inverse map)."""
    v = np.asarray(vertices, dtype=np.float64)
    first, inverse = weld_map(v, tolerance)
    f = inverse[np.asarray(faces, dtype=np.int64).reshape(-1, 3)]
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    return v[first], f[ok], inverse
