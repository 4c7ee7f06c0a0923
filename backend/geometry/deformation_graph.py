"""Embedded deformation (Sumner et al. 2007): how a point blends the motions of its nearest nodes.

The backend has two deformation graphs, and they share this weighting, not more:

- backend.registration.proxy carries a large reference through a numpy ARAP solve: thousands of
  nodes, one per occupied voxel (farthest-point sampling would cost nodes x vertices on millions
  of vertices), straight-line nearest nodes, node positions and rotations solved by the ARAP
  system and pushed to the vertices in chunks a cancel can interrupt.
- backend.fitting.graph is the fit's unknowns, optimised by gradient descent in torch: about a
  hundred farthest-point nodes, nearest nodes measured along the surface (two limbs that touch
  stay apart), axis-angle rotations and translations with Sumner's regulariser, and points bound
  anywhere on a face.

One graph for both would need one framework for both (the ARAP solve is numpy with a sparse LU,
the fit needs autograd) and one node count and one distance, where each solver was tuned on its
own.
"""

from __future__ import annotations

import numpy as np


def blend_weights(dist: np.ndarray, far: np.ndarray) -> np.ndarray:
    """Weights [P, k] for points at distances `dist` [P, k] (ascending) from their k nearest nodes:
    (1 - d / far)^2, normalised, with `far` [P, 1] the distance at which a node's weight reaches
    zero. Given the (k+1)-th node's distance as `far`, a point's blend changes continuously as
    it moves past nodes. A point whose weights all vanish follows its nearest node alone."""
    w = np.clip(1.0 - dist / np.maximum(far, 1e-12), 0.0, None) ** 2
    w[w.sum(1) == 0, 0] = 1.0
    return w / w.sum(1, keepdims=True)
