"""Gradient-based alignment of a predicted point cloud onto a ground-truth one (ActionBench "ICP").

The transform family is the one ActionBench uses: an anisotropic scale along the prediction's own
axes, then a rotation, then a translation, written for row vectors:

    aligned = (points * scale) @ rotation + translation

The rotation is parametrised by the continuous 6D representation (two vectors, Gram-Schmidt,
cross product), and is optimised as ``start @ R(6d)`` from each of the 24 rotations of the cube,
with Adam (lr 0.01, 200 iterations) on the squared symmetric Chamfer loss
(mean squared nearest-neighbour distance each way, summed). The start with the lowest loss seen
wins; its parameters at that iteration are returned.

Deviations from the upstream script (facebookresearch/actionmesh, actionbench/icp.py), chosen so
that a 16-frame sequence evaluates in seconds on two CPU cores instead of on a GPU:

* Starts: the 24 distinct rotations of the cube. Upstream builds its 24 starts from Euler angles,
  and two of them coincide through gimbal lock (so it tries 22 distinct rotations); the set here
  contains those 22 and the 2 it misses.
* Coarse-to-fine: upstream runs all 24 starts for 200 iterations on up to 10k points per side,
  using brute-force nearest neighbours on a GPU. Here the 24 starts run on a random subset of
  ``coarse_points`` points per side (taken from the 10k ICP subsets) with dense nearest neighbours;
  after ``prune_after`` iterations only the ``keep`` starts with the lowest loss so far continue to
  the full ``iterations``. Each start's trajectory is independent of the others (Adam is
  element-wise), so pruning only changes the result when a start discarded early would have won.
  The ``screen`` best starts are then polished on ``refine_points`` (4k) of the ICP points per side
  (KD-tree nearest neighbours)
  for ``screen_iterations`` steps (on 256 points, near-symmetric twins can tie: a flipped ellipsoid
  scored the same as the right one), the best is kept and polished up to ``refine_iterations``
  Levenberg-Marquardt steps on the same squared Chamfer loss, correspondences
  refreshed each step. Adam at lr 0.01 stops short of the minimum (on an exact rotated + scaled
  copy upstream's own procedure leaves a Chamfer residual of about 0.007 at unit size; the polish
  takes it to ~0), so values here can come out slightly lower than upstream's for the same
  prediction: upstream's numbers include that optimiser residual.
  ``AlignSettings.upstream()`` turns all of this off (all starts, all points, all iterations, no refinement): slow on a CPU, but the same procedure.
* Best-so-far bookkeeping: upstream records the rotation from before an Adam step but the scale and
  translation from after it; here all three come from the iteration whose loss was recorded.
* Adam is written out here (same update, betas 0.9/0.999, eps 1e-8) so the optimiser state can
  be pruned with the starts; the loss is divided by the number of starts as upstream's
  ``loss.mean()`` does.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.spatial import cKDTree

_DENSE_LIMIT = 8_000_000  # pairs (batch x n x m) above which nearest neighbours use KD-trees


@dataclass(frozen=True)
class AlignSettings:
    iterations: int = 200
    lr: float = 0.01
    coarse_points: int | None = 256  # None: all points in the 24-start stage (upstream)
    prune_after: int | None = 50  # None: never prune (upstream)
    keep: int = 4
    refine_iterations: int = 40  # Levenberg-Marquardt steps; 0: none (upstream)
    refine_points: int | None = 4000  # points per side for them; None: all the ICP points
    screen: int = 4  # coarse winners polished briefly on all points before one is chosen
    screen_iterations: int = 4
    seed: int = 0  # for the coarse subset

    @classmethod
    def upstream(cls, **overrides) -> "AlignSettings":
        """The upstream procedure, without the speed-ups (minutes per frame on a CPU)."""
        return replace(cls(coarse_points=None, prune_after=None, refine_iterations=0), **overrides)


@dataclass(frozen=True)
class Alignment:
    """aligned = (points * scale) @ rotation + translation (row vectors)."""

    scale: np.ndarray  # [3]
    rotation: np.ndarray  # [3, 3]
    translation: np.ndarray  # [3]
    loss: float  # squared Chamfer loss on the points it was fitted on

    def apply(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) * self.scale) @ self.rotation + self.translation

    @classmethod
    def identity(cls) -> "Alignment":
        return cls(np.ones(3), np.eye(3), np.zeros(3), float("nan"))


def canonical_rotations() -> np.ndarray:
    """The 24 rotations of the cube: signed permutation matrices with determinant +1, [24, 3, 3]."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            m[np.arange(3), perm] = signs
            if np.linalg.det(m) > 0:
                out.append(m)
    # identity first, so ties resolve towards "no rotation"
    out.sort(key=lambda m: -np.trace(m))
    return np.stack(out)


def rotation_from_6d(r6: torch.Tensor) -> torch.Tensor:
    """[..., 6] -> [..., 3, 3]; rows are the Gram-Schmidt frame of the two 3-vectors."""
    a1, a2 = r6[..., :3], r6[..., 3:]
    b1 = a1 / a1.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = b2 / b2.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-2)


def _unpack(theta: torch.Tensor, starts: torch.Tensor):
    """theta [B, 12] = translation(3) | rotation 6D (6) | scale(3)."""
    translation, r6, scale = theta[:, :3], theta[:, 3:9], theta[:, 9:]
    rotation = starts @ rotation_from_6d(r6)
    return scale, rotation, translation


def _transform(points: torch.Tensor, theta: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    scale, rotation, translation = _unpack(theta, starts)
    return (scale[:, None, :] * points) @ rotation + translation[:, None, :]


def _nn_dense(x: torch.Tensor, y: torch.Tensor):
    """Nearest neighbours both ways for batched clouds x [B, n, 3], y [B, m, 3]."""
    d = torch.cdist(x.float(), y.float())
    return d.argmin(dim=2), d.argmin(dim=1)


def _nn_kdtree(x: torch.Tensor, y: np.ndarray, y_tree: cKDTree):
    """Nearest neighbours both ways for x [B, n, 3] against one cloud y [m, 3] (tree given)."""
    xs = x.detach().numpy()
    idx_xy, idx_yx = [], []
    for b in range(xs.shape[0]):
        idx_xy.append(y_tree.query(xs[b], workers=-1)[1])
        idx_yx.append(cKDTree(xs[b]).query(y, workers=-1)[1])
    return torch.from_numpy(np.stack(idx_xy)), torch.from_numpy(np.stack(idx_yx))


def _chamfer_sq(x: torch.Tensor, y: torch.Tensor, idx_xy: torch.Tensor, idx_yx: torch.Tensor) -> torch.Tensor:
    """Per-batch squared Chamfer loss given nearest-neighbour indices (gradients flow through x)."""
    y_nn = torch.gather(y, 1, idx_xy[..., None].expand(-1, -1, 3))
    x_nn = torch.gather(x, 1, idx_yx[..., None].expand(-1, -1, 3))
    return ((x - y_nn) ** 2).sum(-1).mean(-1) + ((y - x_nn) ** 2).sum(-1).mean(-1)


def _optimise(pred: torch.Tensor, gt: torch.Tensor, starts: torch.Tensor, theta: torch.Tensor, *,
              iterations: int, lr: float, divisor: int, prune_after: int | None = None, keep: int = 1,
              use_kdtree: bool = False, decay: bool = False):
    """Adam on theta [B, 12] (pred [1, n, 3] onto gt [1, m, 3]) from the given starts.

    Returns (best loss [B], best theta [B, 12], starts [B, 3, 3]) for the starts still running.
    """
    theta = theta.clone()
    m = torch.zeros_like(theta)
    v = torch.zeros_like(theta)
    best_loss = torch.full((theta.shape[0],), float("inf"), dtype=theta.dtype)
    best_theta = theta.clone()
    y_np = gt[0].numpy()
    y_tree = cKDTree(y_np) if use_kdtree else None
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, iterations + 1):
        if prune_after is not None and step == prune_after + 1 and theta.shape[0] > keep:
            order = torch.argsort(best_loss)[:keep]
            theta, m, v = theta[order], m[order], v[order]
            best_loss, best_theta, starts = best_loss[order], best_theta[order], starts[order]
        theta.requires_grad_(True)
        x = _transform(pred, theta, starts)
        y = gt.expand(theta.shape[0], -1, -1)
        with torch.no_grad():
            if use_kdtree:
                idx_xy, idx_yx = _nn_kdtree(x, y_np, y_tree)
            else:
                idx_xy, idx_yx = _nn_dense(x, y)
        loss = _chamfer_sq(x, y, idx_xy, idx_yx)
        (grad,) = torch.autograd.grad(loss.sum() / divisor, theta)
        with torch.no_grad():
            theta = theta.detach()
            better = loss.detach() < best_loss
            best_loss = torch.where(better, loss.detach(), best_loss)
            best_theta[better] = theta[better]
            m.mul_(beta1).add_(grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (v / (1 - beta2 ** step)).sqrt_().add_(eps)
            step_lr = lr * (1.0 - (step - 1) / iterations) if decay else lr
            theta = theta - (step_lr / (1 - beta1 ** step)) * m / denom
    return best_loss, best_theta, starts


def _polish(pred: torch.Tensor, gt: torch.Tensor, start: torch.Tensor, theta: torch.Tensor,
            iterations: int):
    """Levenberg-Marquardt on the same squared Chamfer loss, correspondences refreshed each step
    (ICP-style). Returns (theta [1, 12], loss) of the best iterate seen on these points."""
    y_np = gt.numpy()
    y_tree = cKDTree(y_np)
    n, m = len(pred), len(gt)
    w_x, w_y = 1.0 / np.sqrt(n), 1.0 / np.sqrt(m)
    theta = theta[0].clone()
    best_theta, best_loss = theta.clone(), float("inf")
    damping = 1e-3

    def residuals(th, idx_xy, idx_yx):
        x = _transform(pred[None], th[None], start)[0]
        return torch.cat(((x - gt[idx_xy]).reshape(-1) * w_x, (gt - x[idx_yx]).reshape(-1) * w_y))

    for _ in range(iterations + 1):
        with torch.no_grad():
            x = _transform(pred[None], theta[None], start)
        idx_xy, idx_yx = (i[0] for i in _nn_kdtree(x, y_np, y_tree))
        r = residuals(theta, idx_xy, idx_yx)
        loss = float((r ** 2).sum())
        if loss < best_loss:
            best_loss, best_theta = loss, theta.clone()
        if loss == 0.0:
            break
        jac = torch.func.jacfwd(residuals)(theta, idx_xy, idx_yx)  # [R, 12]
        jtj, jtr = jac.T @ jac, jac.T @ r
        for _attempt in range(8):  # raise the damping until the step lowers the loss
            step = torch.linalg.solve(jtj + damping * torch.diag(torch.diagonal(jtj) + 1e-9), -jtr)
            trial = theta + step
            if float((residuals(trial, idx_xy, idx_yx) ** 2).sum()) < loss:
                theta = trial
                damping = max(damping / 3.0, 1e-7)
                break
            damping *= 10.0
        else:
            break
    return best_theta[None], best_loss


@contextlib.contextmanager
def _torch_threads(n: int):
    """The tensors here are small: extra intra-op threads only cost (badly, on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def align(pred: np.ndarray, gt: np.ndarray, settings: AlignSettings = AlignSettings()) -> Alignment:
    """The scale + rotation + translation that best maps ``pred`` [P, 3] onto ``gt`` [N, 3]."""
    with _torch_threads(1):
        return _align(pred, gt, settings)


def _align(pred: np.ndarray, gt: np.ndarray, settings: AlignSettings) -> Alignment:
    pred_t = torch.as_tensor(np.asarray(pred, dtype=np.float64))
    gt_t = torch.as_tensor(np.asarray(gt, dtype=np.float64))
    starts = torch.as_tensor(canonical_rotations())
    n_starts = starts.shape[0]
    theta0 = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0],
                          dtype=torch.float64).repeat(n_starts, 1)

    # Stage 1: all starts on a coarse subset (or on everything, for the upstream settings).
    pc, gc = pred_t, gt_t
    if settings.coarse_points is not None:
        rng = np.random.RandomState(settings.seed)
        if len(pc) > settings.coarse_points:
            pc = pc[torch.from_numpy(rng.permutation(len(pc))[: settings.coarse_points])]
        if len(gc) > settings.coarse_points:
            gc = gc[torch.from_numpy(rng.permutation(len(gc))[: settings.coarse_points])]
    dense = n_starts * len(pc) * len(gc) <= _DENSE_LIMIT
    with torch.enable_grad():
        best_loss, best_theta, best_starts = _optimise(
            pc[None], gc[None], starts, theta0, iterations=settings.iterations, lr=settings.lr,
            divisor=n_starts, prune_after=settings.prune_after, keep=max(1, settings.keep),
            use_kdtree=not dense)
        order = torch.argsort(best_loss)
        if settings.refine_iterations <= 0:
            i = int(order[0])
            theta, start, loss = best_theta[i : i + 1], best_starts[i : i + 1], float(best_loss[i])
        else:
            # Stage 2: on a coarse subset, starts that are near-symmetric twins can tie; screen the
            # best few on the larger polishing subset with a few steps, then finish the winner.
            pp, gp = pred_t, gt_t
            if settings.refine_points is not None:
                rng = np.random.RandomState(settings.seed + 1)
                if len(pp) > settings.refine_points:
                    pp = pp[torch.from_numpy(rng.permutation(len(pp))[: settings.refine_points])]
                if len(gp) > settings.refine_points:
                    gp = gp[torch.from_numpy(rng.permutation(len(gp))[: settings.refine_points])]
            screened = []
            for i in order[: max(1, settings.screen)].tolist():
                th, fit = _polish(pp, gp, best_starts[i : i + 1], best_theta[i : i + 1],
                                  min(settings.screen_iterations, settings.refine_iterations))
                screened.append((fit, i, th))
            loss, i, theta = min(screened, key=lambda item: item[0])
            start = best_starts[i : i + 1]
            rest = settings.refine_iterations - settings.screen_iterations
            if rest > 0:
                theta, loss = _polish(pp, gp, start, theta, rest)

    with torch.no_grad():
        scale, rotation, translation = _unpack(theta, start)
    return Alignment(scale[0].numpy().copy(), rotation[0].numpy().copy(), translation[0].numpy().copy(), loss)
